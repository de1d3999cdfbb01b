"""Report tables: pandas Styler -> HTML fragments with CSS classes (styles live in templates/report.css).

All cell and index formatters escape their text themselves (:func:`esc`), then add trusted markup
(CI spans, badges), so a name such as ``<script>`` is rendered as text.  Highlighting: ``best`` marks the
lowest point estimate of a column (within a device for efficiency), ``tie`` the entries whose 95%
intervals overlap the best's.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape
from pandas.io.formats.style import Styler

from harness.report.data import available, unjudged
from harness.results.ranking import DEFAULT_RANK_BY, RANK_BY
from harness.stats.metrics import Z95, efficiency_interval

_uid = itertools.count()
_EMPTY_STYLE = re.compile(r"<style type=\"text/css\">\s*</style>\s*")


def esc(v: Any) -> str:
    return str(escape(str(v)))


def fmt(v: Any, digits: int = 3) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return esc(v)
    if math.isnan(f):
        return "—"
    if f == 0:
        return "0"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return f"{f:.{digits}g}"


def fmt_time(t: Any) -> str:
    """Seconds with a readable unit (µs / ms / s)."""
    try:
        t = float(t)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(t):
        return "—"
    if t < 1e-3:
        return f"{t * 1e6:.3g} µs"
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def rel(hw: float, v: float) -> str:
    if not (math.isfinite(hw) and math.isfinite(v)) or v == 0:
        return ""
    r = 100 * hw / abs(v)
    return f"±{r:.2g}%" if r < 100 else f"±{r:.0f}%"


def _oracles(df: pd.DataFrame) -> set[str]:
    """Configs whose estimator is declared an oracle baseline (the rows' ``oracle`` column)."""
    if "oracle" not in df.columns:
        return set()
    return set(df.loc[df["oracle"].astype(bool), "config"])


def _rankable(r: dict[str, Any]) -> bool:
    """May be called best: not an oracle baseline and a reliable variance interval."""
    return not r.get("oracle", False) and not r.get("unreliable", False)


def badge(unbiased: Any, oracle: bool = False) -> str:
    """A config's mark: oracle baseline (declared), declared biased, or bias status unknown."""
    if oracle:
        return (
            ' <span class="badge unknown" title="oracle baseline: uses the exact E[f], not implementable">oracle</span>'
        )
    if unbiased is False:
        return ' <span class="badge biased" title="declared biased by its implementation">biased</span>'
    if unbiased is None:
        return ' <span class="badge unknown" title="bias status not recorded">?</span>'
    return ""


def styled(
    values: pd.DataFrame,
    classes: pd.DataFrame,
    caption: str = "",
    index_fmt: Callable[[Any], str] | None = None,
    cls: str = "lb",
) -> Markup:
    """Render a DataFrame of pre-escaped HTML strings with per-cell CSS classes."""
    st = Styler(values, uuid=f"t{next(_uid)}", cell_ids=False)
    st = st.set_td_classes(classes.reindex_like(values).fillna(""))
    st = st.format(lambda s: s if isinstance(s, str) else fmt(s))
    st = st.format_index(index_fmt or esc, axis=0)
    st = st.format_index(esc, axis=1)
    st = st.hide(names=True, axis="index").hide(names=True, axis="columns")
    st = st.set_table_attributes(f'class="{cls}"')
    if caption:
        st = st.set_caption(esc(caption))
    return _wrap(st)


_LEAN = [
    (re.compile(r">\n\s*<"), "><"),  # indentation between tags (never the spaces between inline spans)
    (re.compile(r' id="T_[^"]*"'), ""),
    (
        re.compile(r' class="(?:data|row_heading|col_heading|blank|index_name) (?:level\d+ ?)?(?:(?:row|col)\d+ ?)*'),
        ' class="',
    ),
    (re.compile(r' class=""'), ""),
    (re.compile(r"<(t[dh])( [^>]*?)? >"), r"<\1\2>"),
]


def _wrap(st: Styler) -> Markup:
    """Styler HTML made lean: no per-table <style>, ids, positional classes or indentation (a third smaller);
    the highlighting classes (best, tie, bad ...) stay."""
    html = _EMPTY_STYLE.sub("", st.to_html(doctype_html=False))
    for pat, rep in _LEAN:
        html = pat.sub(rep, html)
    return Markup(f'<div class="tablewrap">{html}</div>')


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def mark_best(vals: dict, lo: dict, hi: dict, tiebreak: dict | None = None) -> dict:
    """{key: 'best'} for the lowest value (ties broken by ``tiebreak``), 'tie' where a CI overlaps the best's CI."""
    ok = {k: float(v) for k, v in vals.items() if _finite(v)}
    if not ok:
        return {}
    vmin = min(ok.values())
    cand = [k for k, v in ok.items() if v == vmin]
    tb = tiebreak or {}
    ib = min(cand, key=lambda k: float(tb[k]) if _finite(tb.get(k)) else math.inf)
    out = {ib: "best"}
    hb = float(hi[ib]) if _finite(hi.get(ib)) else ok[ib]
    for k, v in ok.items():
        if k != ib and (float(lo[k]) if _finite(lo.get(k)) else v) <= hb:
            out[k] = "tie"
    return out


def _records(d: pd.DataFrame, keys: list[str]) -> dict[tuple, dict[str, Any]]:
    """Rows as dicts keyed by ``keys`` (first row wins): fast lookups for building tables cell by cell."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in d.to_dict("records"):
        out.setdefault(tuple(r[k] for k in keys), r)
    return out


def _frame(cells: dict[tuple, str], idx: list[str], cols: list[Any], default: str = "") -> pd.DataFrame:
    data = [[cells.get((c, col), default) for col in cols] for c in idx]
    columns = pd.MultiIndex.from_tuples(cols) if cols and isinstance(cols[0], tuple) else cols
    return pd.DataFrame(data, index=idx, columns=columns, dtype=object)


def _variance_cell(r: dict[str, Any], flagged: bool) -> str:
    if r["exact_est"]:
        return (
            f'<span class="v" title="variance {fmt(r["variance"])}: rounding level, the estimator is exact '
            f'here">0 (exact)</span>'
        )
    cell = (
        f'<span class="v" title="95% CI [{fmt(r["variance_ci_low"])}, {fmt(r["variance_ci_high"])}]; '
        f'pooled over {int(r["n_platforms"])} platform(s)">{fmt(r["variance"])}</span>'
        f' <span class="ci">{rel(Z95 * r["variance_se"], r["variance"])}</span>'
    )
    if r["unbiased"] is False or (np.isfinite(r["bias_z"]) and r["bias_z"] > 5):
        cell += (
            f'<br><span class="biasval">bias {fmt(r["bias"], 2)} '
            f"[{fmt(r['bias_ci_low'], 2)}, {fmt(r['bias_ci_high'], 2)}] z={fmt(r['bias_z'], 2)}</span>"
        )
    if r.get("bias_unjudged"):
        cell += (
            ' <span class="warn" title="bias: cannot judge (the bias test is significant, but the tail opposite to'
            ' the deviation is heavy: the sample may not have seen it)">b?</span>'
        )
    if r.get("unreliable"):
        cell += ' <span class="warn" title="unreliable variance: heavy tail, invalid interval or ±100% CI">u</span>'
    if r["nan_fraction"] > 0:
        cell += f'<br><span class="warn">NaN {100 * r["nan_fraction"]:.2g}%</span>'
    if flagged:
        cell += ' <span class="warn" title="backends disagree significantly (Bonferroni over all comparisons)">⚠</span>'
    return cell


def _by_l_table(
    pooled: pd.DataFrame,
    configs: list[str],
    Ls: list[int],
    unbiased: dict[str, Any],
    measure: Callable[[dict[str, Any], str], float],
    cell: Callable[[str, int, dict[str, Any]], str],
) -> Markup:
    """A leaderboard: rows = configs, columns = L; ``measure(r, suffix)`` gives the ranked value ("") and its interval
    ("_ci_low", "_ci_high") for :func:`mark_best`, ``cell(config, L, r)`` the cell's HTML."""
    present = set(pooled["config"])
    idx = [c for c in configs if c in present]
    rec = _records(pooled, ["config", "n_samples"])
    vals: dict[tuple, str] = {}
    cls: dict[tuple, str] = {}
    for L in Ls:
        col = f"L={L}"
        rs = {c: rec[(c, L)] for c in idx if (c, L) in rec}
        ok = {c: r for c, r in rs.items() if _rankable(r)}
        marks = mark_best(*({c: measure(r, k) for c, r in ok.items()} for k in ("", "_ci_low", "_ci_high")))
        for c, r in rs.items():
            vals[(c, col)] = cell(c, L, r)
            cls[(c, col)] = marks.get(c, "")
    cols = [f"L={L}" for L in Ls]
    oracle = _oracles(pooled)
    return styled(
        _frame(vals, idx, cols, '<span class="na">—</span>'),
        _frame(cls, idx, cols),
        index_fmt=lambda c: esc(c) + badge(unbiased.get(c), c in oracle),
    )


def variance_table(
    pooled: pd.DataFrame, configs: list[str], Ls: list[int], unbiased: dict[str, Any], flagged: set[tuple[str, int]]
) -> Markup:
    """Leaderboard by variance: rows = configs, columns = L; cell = pooled variance ±95% CI (and bias if biased)."""
    return _by_l_table(
        pooled,
        configs,
        Ls,
        unbiased,
        lambda r, k: r["variance" + k],
        lambda c, L, r: _variance_cell(r, (c, L) in flagged),
    )


def _eff_interval(r: dict[str, Any]) -> tuple[float, float, float]:
    """(efficiency, low, high): the one efficiency interval (:func:`harness.stats.metrics.efficiency_interval`), from
    the variance interval and the time's standard error."""
    if r["exact_est"]:
        return 0.0, 0.0, 0.0
    v, se = r["variance"], r["variance_se"]
    lo, hi = r.get("variance_ci_low", np.nan), r.get("variance_ci_high", np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # pooled rows and older runs: the SE-based interval
        lo, hi = max(v - Z95 * se, 0.0), v + Z95 * se
    e, elo, ehi = efficiency_interval(v, lo, hi, r["time_median_s"], r["time_iqr_s"], r["time_samples"])
    return float(e), float(elo), float(ehi)


def _efficiency_cell(r: dict[str, Any]) -> str:
    if not np.isfinite(r["time_median_s"]):
        return '<span class="na" title="timing was off for this cell">n/a</span>'
    t = (
        f'<span class="t" title="IQR {fmt(r["time_iqr_s"], 2)} s, n={fmt(r["time_samples"])}">'
        f"{fmt_time(r['time_median_s'])}</span>"
    )
    if r["exact_est"]:
        return f'<span class="v">0 (exact)</span><br>{t}'
    e, _, hi = _eff_interval(r)
    return f'<span class="v">{fmt(e)}</span> <span class="ci">{rel(hi - e, e)}</span><br>{t}'


def efficiency_table(
    rows: pd.DataFrame,
    configs: list[str],
    Ls: list[int],
    platforms: list[str],
    unbiased: dict[str, Any],
    device_of: dict[str, str],
) -> Markup:
    """Leaderboard by efficiency (variance × time per call): rows = configs, columns = (L, platform)."""
    present = set(rows["config"])
    idx = [c for c in configs if c in present]
    rec = _records(rows, ["config", "n_samples", "platform"])
    vals: dict[tuple, str] = {}
    cls: dict[tuple, str] = {}
    devices = sorted({device_of.get(p, p) for p in platforms})
    for L in Ls:
        for dev in devices:
            rs = {
                (c, p): rec[(c, L, p)]
                for c in idx
                for p in platforms
                if device_of.get(p, p) == dev and (c, L, p) in rec
            }
            iv = {k: _eff_interval(r) for k, r in rs.items() if _rankable(r)}
            marks = mark_best(
                {k: v[0] for k, v in iv.items()},
                {k: v[1] for k, v in iv.items()},
                {k: v[2] for k, v in iv.items()},
                {k: r["time_median_s"] for k, r in rs.items() if k in iv},
            )
            for (c, p), r in rs.items():
                vals[(c, (f"L={L}", p))] = _efficiency_cell(r)
                cls[(c, (f"L={L}", p))] = marks.get((c, p), "")
    cols = [(f"L={L}", p) for L in Ls for p in platforms]
    oracle = _oracles(rows)
    return styled(
        _frame(vals, idx, cols, '<span class="na">—</span>'),
        _frame(cls, idx, cols),
        index_fmt=lambda c: esc(c) + badge(unbiased.get(c), c in oracle),
    )


def _per_eval_cell(r: dict[str, Any]) -> str:
    if r["exact_est"]:
        return '<span class="v">0 (exact)</span>'
    v, lo, hi = r["variance_per_eval"], r["variance_per_eval_ci_low"], r["variance_per_eval_ci_high"]
    if not _finite(v):
        return '<span class="na" title="no evaluation count recorded for this cell">n/a</span>'
    n = r.get("evals", math.nan)
    return (
        f'<span class="v" title="95% CI [{fmt(lo)}, {fmt(hi)}]; pooled variance × {fmt(n)} evaluations per '
        f'estimate">{fmt(v)}</span> <span class="ci">{rel(hi - v, v)}</span>'
        f'<br><span class="t">{fmt(n)} evals</span>'
    )


def per_eval_table(pooled: pd.DataFrame, configs: list[str], Ls: list[int], unbiased: dict[str, Any]) -> Markup:
    """Leaderboard at equal evaluations: rows = configs, columns = L; cell = pooled variance × evaluations per
    estimate (f + ∂f) ± 95% CI, the evaluation count below (an exact estimator ranks at 0)."""
    return _by_l_table(
        pooled,
        configs,
        Ls,
        unbiased,
        lambda r, k: 0.0 if r["exact_est"] else r["variance_per_eval" + k],
        lambda c, L, r: _per_eval_cell(r),
    )


OVERVIEW = {  # column per ranking: its title (device appended for time)
    "time": "best at equal time",
    "evals": "best at equal evaluations",
    "samples": "lowest variance at equal L",
}


def overview_table(
    pooled: pd.DataFrame, rows: pd.DataFrame, anchors: dict[tuple, str], rank_by: str = DEFAULT_RANK_BY
) -> Markup:
    """Best unbiased config per (instance, param, L) under every ranking the run allows, the one in force first:
    at equal time (per device, with its backend), at equal evaluations, and lowest variance at equal L.  Eligible:
    declared unbiased (or not recorded), no bias detected or unjudged, not an oracle, a reliable variance; an exact
    config wins; "+n tied": others whose 95% interval overlaps the best's."""
    if pooled.empty:
        return Markup("")
    keys = ["group", "setting", "dim", "param", "n_samples"]

    def ok(d: pd.DataFrame) -> pd.Series:  # None = unknown counts as unbiased here
        clean = ~d["bias_detected"] & ~unjudged(d)
        return (d["unbiased"] != False) & ~d["oracle"] & ~d["unreliable"] & clean  # noqa: E712

    def pick(g: pd.DataFrame, col: str, where: str = "") -> str:
        ex = g[g["exact_est"].astype(bool)]
        g = g[np.isfinite(g[col])].reset_index(drop=True)
        if len(ex):
            e = ex.sort_values("time_median_s").iloc[0] if "time_median_s" in ex else ex.iloc[0]
            return (
                f'<span class="pick">{esc(e["config"])}</span> <span class="ci">exact{where and " " + where(e)}</span>'
            )
        if g.empty:
            return '<span class="na">—</span>'
        marks = mark_best(
            g[col].to_dict(),
            g[f"{col}_ci_low"].to_dict(),
            g[f"{col}_ci_high"].to_dict(),
            g["time_median_s"].to_dict() if "time_median_s" in g else None,
        )
        ib = next(i for i, m in marks.items() if m == "best")
        ntie = sum(m == "tie" for m in marks.values())
        out = f'<span class="pick">{esc(g.loc[ib, "config"])}</span>'
        if where:
            out += f" {where(g.loc[ib])}"
        if ntie:
            out += f' <span class="ci" title="other configs whose 95% CI overlaps the best">(+{ntie} tied)</span>'
        return out

    ub = pooled[ok(pooled)]
    ur = rows[ok(rows) & (np.isfinite(rows["efficiency"]) | rows["exact_est"].astype(bool))]
    devices = sorted(rows["device_key"].unique()) if available(rows, "time") else []
    eff = {k: g for k, g in ur.groupby(keys + ["device_key"], sort=False)}
    evals = available(pooled, "evals")
    order = [rank_by] + [r for r in RANK_BY if r != rank_by]
    data = []
    for k, g in ub.groupby(keys, sort=True):
        cells: dict[str, dict[str, str]] = {"time": {}, "evals": {}, "samples": {}}
        cells["samples"][OVERVIEW["samples"]] = pick(g, "variance")
        if evals:
            cells["evals"][OVERVIEW["evals"]] = pick(g, "variance_per_eval")
        for dev in devices:
            de = eff.get((*k, dev))
            name = f"{OVERVIEW['time']} @ {dev}"
            if de is None or de.empty:
                cells["time"][name] = '<span class="na">—</span>'
            else:
                cells["time"][name] = pick(de, "efficiency", lambda r: f'<span class="ci">[{esc(r["backend"])}]</span>')
        line = {"": anchors.get(k[:3], ""), "problem": f"{k[1]} · D={k[2]}", "param": str(k[3]), "L": str(k[4])}
        for r in order:
            line.update(cells[r])
        data.append(line)
    view = pd.DataFrame(data)
    link: dict[str, Callable[[Any], str]] = {"": lambda a: f'<a href="#{esc(a)}">→</a>' if a else ""}
    link.update({c: (lambda x: x) for c in view.columns if c not in ("", "problem", "param", "L")})
    return simple_table(view, cls="plain overview", formatters=link)


def simple_table(
    df: pd.DataFrame,
    classes: pd.DataFrame | None = None,
    cls: str = "plain",
    formatters: dict[str, Callable[[Any], str]] | None = None,
) -> Markup:
    """A plain escaped table (catalog, agreement, compare); ``formatters`` return trusted HTML."""
    formatters = formatters or {}
    vals = pd.DataFrame(
        {
            c: [formatters[c](v) if c in formatters else (fmt(v) if isinstance(v, float) else esc(v)) for v in df[c]]
            for c in df.columns
        },
        index=range(len(df)),
        dtype=object,
    )
    st = Styler(vals, uuid=f"t{next(_uid)}", cell_ids=False)
    if classes is not None:
        st = st.set_td_classes(classes.set_axis(range(len(df))).reindex_like(vals).fillna(""))
    st = st.format(lambda x: x).format_index(esc, axis=1).hide(axis="index")
    st = st.set_table_attributes(f'class="{cls}"')
    return _wrap(st)
