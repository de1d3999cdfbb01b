"""The compare page's figure: time ratio vs variance ratio (B / A) per cell with 95% CIs."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.report.plots import RC, FigureOut, to_uri


def ratio_scatter(res: pd.DataFrame) -> FigureOut | None:
    d = res.drop_duplicates(["cell_key", "param"])
    ok = np.isfinite(d["var_ratio"]) & (d["var_ratio"] > 0) & np.isfinite(d["time_ratio"]) & (d["time_ratio"] > 0)
    d = d[ok]
    if d.empty:
        return None
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.8, 3.4), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for sig_v, sig_t, color in (
            (False, False, "0.6"),
            (True, False, "#c0392b"),
            (False, True, "#1f5f99"),
            (True, True, "#6c3483"),
        ):
            s = d[(d["var_sig"] == sig_v) & (d["time_sig"] == sig_t)]
            if s.empty:
                continue
            xerr = np.vstack(
                [(s["var_ratio"] - s["var_lo"]).clip(lower=0), (s["var_hi"] - s["var_ratio"]).clip(lower=0)]
            )
            yerr = np.vstack(
                [(s["time_ratio"] - s["time_lo"]).clip(lower=0), (s["time_hi"] - s["time_ratio"]).clip(lower=0)]
            )
            ax.errorbar(
                s["var_ratio"],
                s["time_ratio"],
                xerr=np.nan_to_num(xerr),
                yerr=np.nan_to_num(yerr),
                linestyle="none",
                marker="o",
                color=color,
                elinewidth=0.6,
                markersize=3,
            )
        ax.axvline(1, color="0.3", linewidth=0.7)
        ax.axhline(1, color="0.3", linewidth=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("variance ratio B/A (95% CI)")
        ax.set_ylabel("time ratio B/A (95% CI)")
        handles = [
            Line2D([], [], color=c, marker="o", linestyle="none") for c in ("0.6", "#c0392b", "#1f5f99", "#6c3483")
        ]
        fig.legend(
            handles,
            ["no significant change", "variance changed", "time changed", "both changed"],
            loc="outside right center",
            frameon=False,
        )
    return to_uri(
        fig,
        "compare",
        "Time ratio vs variance ratio per cell",
        "Each point is one cell × parameter; bars are 95% CIs; colored when the interval excludes 1.",
    )
