"""The cross-backend agreement figure: QQ plot of the signed comparison z-values against N(0, 1)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.special import ndtri

from harness.report.data import Z95
from harness.report.plots import RC, FigureOut, to_uri

PNG_OVER = 300  # more points than this: the figure is embedded as PNG (an SVG marker costs ~100 bytes)


def qq_plot(agree: pd.DataFrame) -> FigureOut | None:
    """Sorted signed z against standard normal quantiles; the identity line, ±1.96 and the Bonferroni bound."""
    z = np.sort(agree["z_signed"].to_numpy(dtype=float))
    z = z[np.isfinite(z)]
    if z.size == 0:
        return None
    q = ndtri((np.arange(1, z.size + 1) - 0.5) / z.size)
    zc = float(agree.attrs.get("z_bonferroni", np.nan))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(4.6, 3.4), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        lim = float(max(np.abs(q).max(), min(np.abs(z).max(), 12.0), zc if np.isfinite(zc) else 0.0)) * 1.05
        ax.plot([-lim, lim], [-lim, lim], color="0.45", linewidth=0.9, linestyle=":", label="agreement: z ~ N(0, 1)")
        for b, lab, ls in ((Z95, "±1.96 (95%)", "--"), (zc, f"±{zc:.2f} (Bonferroni)", "-")):
            if np.isfinite(b):
                ax.axhspan(-b, b, color="#3b528b", alpha=0.06 if ls == "--" else 0.04, linewidth=0)
                ax.axhline(b, color="#3b528b", linewidth=0.6, linestyle=ls, label=lab)
                ax.axhline(-b, color="#3b528b", linewidth=0.6, linestyle=ls)
        bad = np.abs(z) > (zc if np.isfinite(zc) else np.inf)
        ax.plot(q[~bad], np.clip(z[~bad], -lim, lim), "o", markersize=2.5, color="#21918c", label="comparisons")
        if bad.any():
            ax.plot(q[bad], np.clip(z[bad], -lim, lim), "D", markersize=3.5, color="#c0392b", label="significant")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel("N(0, 1) quantile")
        ax.set_ylabel("z = (var A − var B) / SE")
        ax.legend(loc="upper left", frameon=False, fontsize=6.5)
        fmt = "png" if z.size > PNG_OVER else "svg"
    alt = (
        f"QQ plot of {z.size} cross-backend z-values against the standard normal; {int(bad.sum())} beyond the "
        f"Bonferroni bound {zc:.2f}, {int((np.abs(z) > Z95).sum())} beyond 1.96."
    )
    cap = (
        "Cross-backend agreement: if backends measure the same variance, the points follow the dotted identity "
        "line; points outside the solid band disagree family-wise (values beyond ±12 are drawn at the edge)."
    )
    return to_uri(fig, "qq", alt, cap, force=fmt)
