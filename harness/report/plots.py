"""Report figures: matplotlib (Agg canvas, no pyplot state) rendered to inline SVG (or PNG) data URIs.

Every figure draws confidence intervals where the number has one: variance 95% CIs, per-call time
median ± IQR/2, bias 95% CIs.  Intervals are drawn as one LineCollection per series (fast to draw, small
files).  Labels coming from users or plugins pass through :func:`_txt` so matplotlib's mathtext never
interprets them (a ``$`` in a name stays a ``$``).  A figure whose SVG exceeds :data:`SVG_MAX_BYTES`
(dense plots of large runs) is embedded as a palette PNG instead when that is smaller.  SVGs are embedded as
UTF-8 data URIs (not base64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import cycle

import matplotlib
import matplotlib.style
import matplotlib.ticker
import matplotlib.transforms
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.report.data import pareto_mask
from harness.report.encode import FigureOut
from harness.report.encode import to_uri as _to_uri


def to_uri(fig: Figure, kind: str, alt: str, caption: str, force: str = "") -> FigureOut:
    """Encode with the report's rc settings (see :mod:`harness.report.encode`)."""
    return _to_uri(fig, kind, alt, caption, force, RC)


RC = {
    "svg.fonttype": "none",  # text stays text: small files, selectable, printable
    "svg.hashsalt": "stochgrad",  # deterministic ids
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],  # short font-family lists in every SVG <text>
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
}
PANEL_W, PANEL_H = 3.3, 2.4
MARKERS = "os^Dv<>pP*hX"


def _txt(s: object, maxlen: int = 48) -> str:
    """A user-provided string made safe for matplotlib text (no mathtext), shortened to ``maxlen`` characters."""
    t = str(s)
    if len(t) > maxlen:
        t = t[: maxlen - 1] + "…"
    return t.replace("$", r"\$")


class Palette:
    """Stable style per config across all figures: colour (colour-blind-safe), marker; biased configs dashed with
    hollow markers."""

    def __init__(self, configs: Sequence[str], biased: set[str]) -> None:
        # colour-blind-safe cycle (Tableau's colorblind10); markers and dashes tell the rest apart
        base = matplotlib.style.library["tableau-colorblind10"]["axes.prop_cycle"].by_key()["color"]
        self.style: dict[str, dict[str, object]] = {}
        colors, markers = cycle(base), cycle(MARKERS)
        for c in configs:
            b = c in biased
            self.style[c] = {
                "color": next(colors),
                "marker": next(markers),
                "linestyle": "--" if b else "-",
                "mfc": "white" if b else None,
            }

    def __call__(self, config: str) -> dict[str, object]:
        return self.style.get(config, {"color": "gray", "marker": "o", "linestyle": ":", "mfc": None})

    def handles(self, configs: Sequence[str]) -> list[Line2D]:
        out = []
        for c in configs:
            s = self(c)
            out.append(
                Line2D(
                    [],
                    [],
                    color=s["color"],
                    marker=s["marker"],
                    linestyle=s["linestyle"],
                    markerfacecolor=s["mfc"] or s["color"],
                )
            )
        return out


def _new(nrows: int, ncols: int, extra_h: float = 0.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(PANEL_W * ncols + 0.2, PANEL_H * nrows + extra_h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def _legend(fig: Figure, palette: Palette, configs: Sequence[str], extra: Sequence[tuple[Line2D, str]] = ()) -> None:
    handles = palette.handles(configs) + [h for h, _ in extra]
    labels = [_txt(c, 40) for c in configs] + [lab for _, lab in extra]
    if handles:
        ncol = max(1, min(len(handles), int(fig.get_figwidth() / _label_w(labels))))
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False)


def _label_w(labels: Sequence[str]) -> float:
    """Approximate width in inches of the widest legend entry (handle + text at 7.5 pt)."""
    return 0.45 + 0.058 * min(max((len(x) for x in labels), default=8), 40)


def _legend_rows(labels: Sequence[str], n_panels: int) -> float:
    per_row = max(1, int((PANEL_W * n_panels + 0.2) / _label_w(labels)))
    return 0.19 * math.ceil(len(labels) / per_row) + 0.1


def _int_ticks(ax, values: Sequence[float]) -> None:
    """Ticks at the measured L or D values (log axes otherwise show a single decade label)."""
    xs = sorted({float(v) for v in values})
    if len(xs) > 8:
        xs = xs[:: math.ceil(len(xs) / 8)]
    ax.set_xticks(xs, [f"{x:g}" for x in xs])


def _errbar(ax, x, y, lo, hi, style, logy: bool = True, horizontal: bool = False) -> None:
    """A line/markers plus its intervals as ONE LineCollection (cheap to draw and small in SVG)."""
    x, y, lo, hi = (np.asarray(a, dtype=float) for a in (x, y, lo, hi))
    v = x if horizontal else y
    lo = np.where(np.isfinite(lo), lo, v)
    hi = np.where(np.isfinite(hi), hi, v)
    if logy:
        lo = np.where(lo > 0, lo, v * 1e-3)
    ls = "none" if horizontal else style["linestyle"]
    ax.plot(
        x, y, color=style["color"], marker=style["marker"], linestyle=ls, markerfacecolor=style["mfc"] or style["color"]
    )
    if horizontal:
        ax.hlines(y, lo, hi, color=style["color"], linewidth=0.8, alpha=0.8)
    else:
        ax.vlines(x, lo, hi, color=style["color"], linewidth=0.8, alpha=0.8)


def _positive(d: pd.DataFrame, col: str) -> pd.DataFrame:
    keep = np.isfinite(d[col]) & (d[col] > 0)
    if col == "variance" and "exact_est" in d.columns:
        keep &= ~d["exact_est"].astype(bool)
    return d[keep]


def _exact_note(d: pd.DataFrame) -> str:
    if "exact_est" not in d.columns:
        return ""
    ex = sorted(set(d.loc[d["exact_est"].astype(bool), "config"]))
    return f" Exact (zero-variance) estimators are not drawn on log axes: {', '.join(ex)}." if ex else ""


def variance_vs(
    pooled: pd.DataFrame,
    x: str,
    rows: list[tuple[str, pd.DataFrame]],
    params: list[str],
    palette: Palette,
    configs: list[str],
    ref_slope: float | None,
    title: str,
) -> FigureOut | None:
    """Variance (pooled over platforms, 95% CI bars) against ``x`` on log-log axes; one panel per row × param."""
    if not rows or not params:
        return None
    with matplotlib.rc_context(RC):
        fig, axes = _new(len(rows), len(params), _legend_rows(configs + ["∝ 1/L reference"], len(params)))
        drew_ref = False
        for i, (rlabel, sub) in enumerate(rows):
            for j, p in enumerate(params):
                ax = axes[i, j]
                d = sub[sub["param"] == p]
                for c in configs:
                    dp = _positive(d[d["config"] == c], "variance").sort_values(x)
                    if not dp.empty:
                        _errbar(ax, dp[x], dp["variance"], dp["variance_ci_low"], dp["variance_ci_high"], palette(c))
                dp = _positive(d, "variance")
                xs = np.sort(dp[x].unique())
                if ref_slope is not None and len(xs) > 1:
                    x0 = xs[0]
                    v0 = float(np.exp(np.log(dp[dp[x] == x0]["variance"]).median()))
                    ax.plot(xs, v0 * (xs / x0) ** ref_slope, color="0.45", linestyle=":", linewidth=1.0)
                    drew_ref = True
                ax.set_xscale("log")
                _int_ticks(ax, sub[x].unique())
                if not dp.empty:
                    ax.set_yscale("log")
                ax.set_title(_txt(f"{rlabel} · ∂{p}" if rlabel else f"∂{p}"))
                ax.set_xlabel("L (samples per estimate)" if x == "n_samples" else "dimension D")
                ax.set_ylabel("variance (95% CI)")
        extra = [(Line2D([], [], color="0.45", linestyle=":"), "∝ 1/L reference")] if drew_ref else []
        _legend(fig, palette, configs, extra)
    cap = title + _exact_note(pd.concat([sub for _, sub in rows]))
    return to_uri(fig, "variance_vs_" + x, title, cap)


def time_vs(
    rows: pd.DataFrame, x: str, platforms: list[str], palette: Palette, configs: list[str], title: str
) -> FigureOut | None:
    """Per-call time (median, bars = ± IQR/2) against ``x``; one panel per platform."""
    d = _positive(rows, "time_median_s")
    platforms = [p for p in platforms if p in set(d["platform"])]
    if d.empty or not platforms:
        return None
    ncols = min(len(platforms), 4)
    nrows = math.ceil(len(platforms) / ncols)
    with matplotlib.rc_context(RC):
        fig, axes = _new(nrows, ncols, _legend_rows(configs, ncols))
        for k, plat in enumerate(platforms):
            ax = axes[k // ncols, k % ncols]
            dp = d[d["platform"] == plat]
            for c in configs:
                dc = dp[dp["config"] == c].sort_values(x)
                if dc.empty:
                    continue
                m, half = dc["time_median_s"], dc["time_iqr_s"].fillna(0.0) / 2
                _errbar(ax, dc[x], m, np.maximum(m - half, m / 2), m + half, palette(c))
            ax.set_xscale("log")
            _int_ticks(ax, dp[x].unique())
            ax.set_yscale("log")
            ax.set_title(_txt(plat))
            ax.set_xlabel("L (samples per estimate)" if x == "n_samples" else "dimension D")
            ax.set_ylabel("time per call [s] (median ± IQR/2)" if k % ncols == 0 else "")
        for k in range(len(platforms), nrows * ncols):
            axes[k // ncols, k % ncols].set_visible(False)
        _legend(fig, palette, configs)
    return to_uri(fig, "time_vs_" + x, title, title)


def frontier(
    rows: pd.DataFrame, params: list[str], Ls: list[int], palette: Palette, configs: list[str], title: str
) -> FigureOut | None:
    """Time per call vs variance per (param, L); Pareto-optimal points connected and labeled."""
    d = _positive(_positive(rows, "time_median_s"), "variance")
    if d.empty:
        return None
    params = [p for p in params if p in set(d["param"])][:2]
    Ls = [L for L in Ls if L in set(d["n_samples"])][:3]
    with matplotlib.rc_context(RC):
        fig, axes = _new(len(params), len(Ls), _legend_rows(configs + ["Pareto frontier"], len(Ls)))
        for i, p in enumerate(params):
            for j, L in enumerate(Ls):
                ax = axes[i, j]
                dd = d[(d["param"] == p) & (d["n_samples"] == L)]
                for c in configs:
                    dc = dd[dd["config"] == c]
                    if dc.empty:
                        continue
                    s = palette(c)
                    m, half = dc["time_median_s"], dc["time_iqr_s"].fillna(0) / 2
                    _errbar(ax, dc["variance"], m, dc["variance_ci_low"], dc["variance_ci_high"], s, horizontal=True)
                    ax.vlines(
                        dc["variance"],
                        np.maximum(m - half, m / 2),
                        m + half,
                        color=s["color"],
                        linewidth=0.8,
                        alpha=0.8,
                    )
                cand = dd[~dd["oracle"].astype(bool)] if "oracle" in dd.columns else dd  # oracles: never a pick
                if not cand.empty:
                    m = pareto_mask(cand["variance"].to_numpy(), cand["time_median_s"].to_numpy())
                    front = cand[m].sort_values("variance")
                    ax.step(
                        front["variance"], front["time_median_s"], where="post", color="0.3", linewidth=0.8, alpha=0.6
                    )
                    one = cand["platform"].nunique() == 1
                    for k, r in enumerate(front.itertuples(index=False)):
                        lab = r.config if one else f"{r.config} [{r.platform}]"
                        a = ax.annotate(
                            _txt(lab),
                            (r.variance, r.time_median_s),
                            fontsize=5.5,
                            color="0.15",
                            xytext=(3, 3 + 7 * (k % 3)),
                            textcoords="offset points",
                            annotation_clip=True,
                        )
                        a.set_in_layout(False)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(_txt(f"∂{p} · L={L}"))
                ax.set_xlabel("variance (95% CI)")
                ax.set_ylabel("time per call [s]")
        _legend(fig, palette, configs, [(Line2D([], [], color="0.3", linewidth=0.8), "Pareto frontier")])
    cap = (
        title
        + " Lower left is better; labeled points are Pareto-optimal (oracle baselines excluded)."
        + _exact_note(rows)
    )
    return to_uri(fig, "frontier", title, cap)


def bias_forest(
    rows: pd.DataFrame, params: list[str], palette: Palette, configs: list[str], zthr: float, title: str
) -> FigureOut | None:
    """Bias (RMS over coordinates) with 95% CI per config × platform; the largest |z| per config on the right."""
    d = rows[np.isfinite(rows["bias"])]
    configs = [c for c in configs if c in set(d["config"])]
    if d.empty or not configs:
        return None
    platforms = sorted(d["platform"].unique())
    params = [p for p in params if p in set(d["param"])][:4]
    h = max(1.2, 0.22 * len(configs) * max(1, min(len(platforms), 3)) ** 0.5 + 0.6)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(PANEL_W * len(params) + 0.8, h + 0.35), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(params), squeeze=False)[0]
        offs = np.linspace(-0.25, 0.25, len(platforms)) if len(platforms) > 1 else np.zeros(1)
        pidx = {plat: k for k, plat in enumerate(platforms)}
        for ax, p in zip(axes, params):
            dp = d[d["param"] == p]
            trans = matplotlib.transforms.blended_transform_factory(ax.transAxes, ax.transData)
            for yi, c in enumerate(configs):
                r = dp[dp["config"] == c]
                if r.empty:
                    continue
                ys = yi + offs[[pidx[x] for x in r["platform"]]]
                _errbar(ax, r["bias"], ys, r["bias_ci_low"], r["bias_ci_high"], palette(c), logy=False, horizontal=True)
                z = float(r["bias_z"].max())
                bad = np.isfinite(z) and z > zthr
                ax.text(
                    1.01,
                    yi,
                    f"z={z:.1f}" if np.isfinite(z) else "z=?",
                    transform=trans,
                    fontsize=6.5,
                    va="center",
                    color="#c0392b" if bad else "0.35",
                    fontweight="bold" if bad else "normal",
                )
            ax.set_yticks(range(len(configs)))
            ax.set_yticklabels([_txt(c, 30) for c in configs])
            ax.set_ylim(len(configs) - 0.5, -0.5)
            ax.set_xlim(left=0)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
            ax.set_xlabel(f"bias of ∂{_txt(p)} (95% CI)")
    cap = (
        title + f" Each row shows every platform ({', '.join(platforms)}, top to bottom); z (right) = largest "
        f"|z| over coordinates and platforms, red when above the Bonferroni threshold {zthr:.2f}."
    )
    return to_uri(fig, "bias", title, cap)
