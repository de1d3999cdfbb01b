"""The report's first screen: heat maps at equal time, at equal evaluations and at equal L, and run health.

The family verdicts beside them are :mod:`harness.report.ranking`'s.  The heat maps come in the order of the
ranking in force (``rank_by``: time, the default, then evaluations, then the equal-L view, labelled as such); a map
whose measure the run lacks (``variance_per_eval`` in runs made before issue 19, efficiency with timing off) is
named as unavailable, never drawn empty.

Heat map cell (estimator, distribution × objective): the mean over the group's problems (setting, D, parameter,
L — and device for efficiency) of log10(value / best value of an eligible estimator on that problem), where the
estimator's best hyperparameter setting is taken.  Eligible for "best": declared unbiased, no detected bias,
not an oracle baseline, not exact (zero variance), a bias verdict of "no bias detected" (not "cannot judge") and a
reliable variance (valid interval, no heavy tail, 95% CI half-width below 100%).  Marks: ``b`` biased (declared or
detected), ``b?`` bias cannot be judged (harness.stats.metrics.bias_verdict), ``u`` unreliable (see above), ``c`` precision
capped; ``0`` an exact (zero-variance) estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from markupsafe import Markup

from harness.report.data import unjudged
from harness.report.ranking import UNAVAILABLE, available
from harness.report.sections import anchor
from harness.report.tables import esc
from harness.results.ranking import DEFAULT_RANK_BY, RANK_COLUMNS, RANK_LABELS

REINFORCE = "score_function"
KEYS = ["group", "setting", "dim", "param", "n_samples"]
CLIP = (-1.0, 3.0)  # log10 ratio range of the colour scale: 10x better (biased) .. 1000x worse
CMAP = "cividis"
MARKS = {"biased": "b", "unjudged": "b?", "unreliable": "u", "capped": "c"}
MARK_LABELS = {"biased": "biased", "unjudged": "bias: cannot judge", "unreliable": "unreliable", "capped": "capped"}
LEVELS = 24  # colour classes of the scale


def colour(t: float) -> tuple[str, str]:
    """(background, text colour) for a position ``t`` in [0, 1] of the scale (0 = best): cividis, reversed."""
    r, g, b, _ = matplotlib.colormaps[CMAP](1.0 - min(max(t, 0.0), 1.0))
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}", "#000" if lum > 0.45 else "#fff"


def _pos(v: float) -> float:
    return (min(max(v, CLIP[0]), CLIP[1]) - CLIP[0]) / (CLIP[1] - CLIP[0])


def gradient_css() -> str:
    """CSS linear-gradient of the colour scale (legend bar)."""
    stops = [f"{colour(t)[0]} {100 * t:.0f}%" for t in np.linspace(0, 1, 9)]
    return f"linear-gradient(to right, {', '.join(stops)})"


def legend_ticks() -> list[tuple[float, str]]:
    """(position %, label) under the legend bar."""
    return [(100 * _pos(v), lab) for v, lab in ((-1, "10× lower"), (0, "best"), (1, "10×"), (2, "100×"), (3, "≥1000×"))]


def _eligible(d: pd.DataFrame, col: str) -> pd.Series:
    v = d[col]
    return (
        (d["unbiased"] != False)  # noqa: E712  (None: not recorded, counts as unbiased)
        & ~d["bias_detected"].astype(bool)
        & ~unjudged(d)
        & ~d["oracle"].astype(bool)
        & ~d["exact_est"].astype(bool)
        & ~d["unreliable"].astype(bool)
        & np.isfinite(v)
        & (v > 0)
    )


def ratios(d: pd.DataFrame, col: str, keys: list[str]) -> pd.DataFrame:
    """Per (problem key, estimator): log10(value / best eligible value), exactness and flags."""
    d = d[np.isfinite(d[col]) | d["exact_est"].astype(bool)].copy()
    if d.empty:
        return pd.DataFrame()
    d["_ok"] = _eligible(d, col)
    ref = d[d["_ok"]].groupby(keys, sort=False)[col].min().rename("_ref")
    d["biased"] = (d["unbiased"] == False) | d["bias_detected"].astype(bool)  # noqa: E712
    d["unjudged"] = unjudged(d) & ~d["biased"]
    d["_v"] = d[col].where(~d["exact_est"].astype(bool), 0.0)
    g = d.groupby(keys + ["estimator"], sort=False).agg(
        v=("_v", "min"),
        exact=("exact_est", "any"),
        biased=("biased", "any"),
        unjudged=("unjudged", "any"),
        unreliable=("unreliable", "any"),
        capped=("capped", "any"),
        oracle=("oracle", "first"),
    )
    g = g.reset_index().merge(ref.reset_index(), on=keys, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        g["log10"] = np.log10(g["v"] / g["_ref"])
    return g


@dataclass
class HeatMap:
    """Rows (estimators) × columns (groups) of coloured cells; ``html`` is the rendered table body."""

    title: str
    note: str
    rows: list[str]
    cols: list[str]
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    oracles: set[str] = field(default_factory=set)  # estimators declared oracle baselines (labelled as references)


def heat(
    r: pd.DataFrame, title: str, note: str, rows: list[str], cols: list[str], oracles: set[str] | None = None
) -> HeatMap:
    """Aggregate per-problem ratios into (estimator, group) cells: mean log10, exactness, marks."""
    hm = HeatMap(title, note, rows, cols, oracles=set(oracles or ()))
    if r.empty:
        return hm
    for (e, g), c in r.groupby(["estimator", "group"], sort=False):
        fin = c["log10"][np.isfinite(c["log10"])]
        hm.cells[(e, g)] = {
            "mean": float(fin.mean()) if len(fin) else math.nan,
            "n": int(len(fin)),
            "n_all": int(len(c)),
            "exact": bool(c["exact"].all()),
            "biased": bool(c["biased"].any()),
            "unjudged": bool(c["unjudged"].any() and not c["biased"].any()),
            "unreliable": bool(c["unreliable"].any()),
            "capped": bool(c["capped"].any()),
        }
    return hm


def _level(t: float) -> int:
    return round(min(max(t, 0.0), 1.0) * (LEVELS - 1))


def heat_css() -> str:
    """CSS classes ``h0`` .. ``h{LEVELS-1}`` of the colour scale (one class per cell instead of inline styles)."""
    rules = []
    for k in range(LEVELS):
        bg, fg = colour(k / (LEVELS - 1))
        rules.append(f"table.heat td.h{k}{{background-color:{bg};color:{fg}}}")
    return "\n".join(rules)


def _cell_html(hm: HeatMap, e: str, g: str) -> str:
    c = hm.cells.get((e, g))
    if c is None:
        return '<td class="hm-na"></td>'
    marks = "".join(MARKS[k] for k in MARKS if c[k])
    if c["exact"]:
        cls = f"h{_level(0.0)}"
        label, val = "exact (zero variance)", "0"
    elif math.isnan(c["mean"]):
        cls = "hm-q"
        label, val = "no comparable value (no eligible reference on these problems)", "?"
    else:
        cls = f"h{_level(_pos(c['mean']))}"
        label, val = f"{10 ** c['mean']:.3g}× the best (geometric mean over {c['n']} problems)", ""
    flags = ", ".join(MARK_LABELS[k] for k in MARKS if c[k])
    tip = f"{e} on {g}: {label}" + (f"; {flags}" if flags else "")
    cls += " hm-u" if c["unreliable"] else ""
    return f'<td class="{cls}" title="{esc(tip)}"><a href="#{anchor(g)}" tabindex="-1">{esc(val + marks)}</a></td>'


def heat_table(maps: list[HeatMap]) -> Markup:
    """One table holding every heat map (one shared, rotated column header), estimators as rows."""
    if not maps or not maps[0].cols:
        return Markup("")
    cols = maps[0].cols
    head = "".join(f'<th scope="col" class="rot"><a href="#{anchor(g)}"><span>{esc(g)}</span></a></th>' for g in cols)
    body = []
    for hm in maps:
        body.append(
            f'<tr class="hm-block"><th scope="rowgroup" colspan="{len(cols) + 1}">{esc(hm.title)}'
            f' <span class="muted">{esc(hm.note)}</span></th></tr>'
        )
        for e in hm.rows:
            if not any((e, g) in hm.cells for g in cols):
                continue
            label = esc(e) + (' <span class="ref">(oracle, reference)</span>' if e in hm.oracles else "")
            body.append(f'<tr><th scope="row">{label}</th>{"".join(_cell_html(hm, e, g) for g in cols)}</tr>')
    cap = "Heat maps: estimators (rows) by distribution × objective (columns); colour = log10 of the ratio to the best."
    return Markup(
        f'<table class="heat" aria-label="{esc(cap)}"><thead><tr><th></th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _order(df: pd.DataFrame) -> list[str]:
    """Estimators: unbiased first, oracles last, then by family and name."""
    c = df[["estimator", "family", "unbiased", "oracle"]].drop_duplicates("estimator").copy()
    c["_b"] = c["unbiased"].map(lambda v: 0 if v is not False else 1) + 2 * c["oracle"].astype(int)
    return list(c.sort_values(["_b", "family", "estimator"])["estimator"])


HEAT_TITLES = {
    "time": ("Efficiency (variance × time) ÷ best unbiased — at equal time", "(best backend per device)"),
    "evals": ("Variance × evaluations ÷ best unbiased — at equal evaluations", "(pooled over backends)"),
    "samples": ("Variance ÷ best unbiased — at equal L (not cost-fair)", "(pooled over backends)"),
}


def heat_maps(df: pd.DataFrame, pooled: pd.DataFrame, rank_by: str = DEFAULT_RANK_BY) -> tuple[Markup, list[str]]:
    """The heat maps as one HTML table: the ranking in force first, then the other cost-fair one, then the equal-L
    view (each best hyperparameter setting); second value: the rankings the run cannot show (with why)."""
    rows, cols = _order(df), sorted(df["group"].unique())
    oracles = set(df.loc[df["oracle"].astype(bool), "estimator"])
    order = [rank_by] + [r for r in ("time", "evals", "samples") if r != rank_by]
    maps, missing = [], []
    for r in order:
        d, keys = (df, KEYS + ["device_key"]) if r == "time" else (pooled, KEYS)
        if not available(d, r):
            missing.append(f"{RANK_LABELS[r]}: {UNAVAILABLE[r]}")
            continue
        title, note = HEAT_TITLES[r]
        maps.append(heat(ratios(d, RANK_COLUMNS[r], keys), title, note, rows, cols, oracles))
    return heat_table(maps), missing


def health_line(df: pd.DataFrame, infos: list[Any], agree: pd.DataFrame) -> dict[str, Any]:
    """Cells, failures, skips and cross-backend disagreements (observed vs expected by chance)."""
    n_cells = int(df.drop_duplicates(["run_id", "cell_key"]).shape[0]) if not df.empty else 0
    n_fail = sum(len(i.meta.get("failed") or []) for i in infos)
    n_skip = sum(len(i.meta.get("skipped") or []) for i in infos)
    n_cmp = len(agree)
    return {
        "cells": n_cells,
        "failed": n_fail,
        "skipped": n_skip,
        "comparisons": n_cmp,
        "outside": int(agree["outside_ci"].sum()) if n_cmp else 0,
        "expected": 0.05 * n_cmp,
        "significant": int(agree["significant"].sum()) if n_cmp else 0,
        "unreliable": int(df["unreliable"].sum()) if not df.empty else 0,
        "capped": int(df["capped"].sum()) if not df.empty else 0,
        "unjudged": int(df["bias_unjudged"].sum()) if not df.empty else 0,
        "rows": len(df),
    }
