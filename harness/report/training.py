"""Report section for training runs: ELBO curves vs steps and seconds, the final table, variance vs speed.

:func:`training_section` is a pure function of the run directories' ``curves.parquet`` and ``results.parquet``
frames (concatenated), returning ``{"figures": {title: PNG data URI}, "tables": {name: DataFrame},
"notes": [str]}`` for the report to lay out.  :func:`compare_training` compares two training runs' summary rows
(held-out bound difference and speed ratio per configuration, intervals over seeds).

Definitions.  Curves: mean over seeds of the held-out ELBO at each logged step, band = ± one standard error over
seeds; against seconds, x is the seed-mean cumulative training time at that step.  The target ELBO (per
workload) is the worst estimator's seed-mean final held-out ELBO unless given, so every estimator reaches it;
"bound per second": each unit's held-out ELBO at
a common time budget (the shortest unit's training time, interpolated).  Time/steps to target: the first logged step whose held-out ELBO ≥ target, per seed (NaN if never), averaged
over the seeds that reached it.  Variance vs speed: each estimator's mean online gradient variance against its
steps to target, with the Spearman rank correlation over estimators.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.report import render as R
from harness.report.tables import simple_table

CONFIG = ["workload", "estimator", "objective", "lr", "n_samples", "batch_size", "backend", "device", "dtype"]


def _label(df: pd.DataFrame) -> pd.Series:
    lab = df["estimator"].astype(str)
    if df["lr"].nunique() > 1:
        lab = lab + " lr=" + df["lr"].map("{:g}".format)
    if df["objective"].nunique() > 1:
        lab = lab + " (" + df["objective"].astype(str) + ")"
    return lab


def _uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _se(x: pd.Series) -> float:
    x = x.dropna()
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def reach(curves: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per unit: the first logged step (and its cumulative time) with held-out ELBO ≥ ``target`` (NaN if never)."""
    rows = []
    for key, c in curves.sort_values("step").groupby("unit_key"):
        hit = c[c["val_elbo"] >= target]
        first = hit.iloc[0] if len(hit) else None
        rows.append(
            {
                "unit_key": key,
                "steps_to_target": float(first["step"]) if first is not None else math.nan,
                "time_to_target_s": float(first["time_s"]) if first is not None else math.nan,
            }
        )
    return pd.DataFrame(rows)


def at_budget(curves: pd.DataFrame) -> pd.DataFrame:
    """Per unit: held-out ELBO at a common time budget (the shortest unit's training time), by linear interpolation
    of its (cumulative time, ELBO) curve — the "bound per second" comparison at equal wall-clock."""
    budget = float(curves.groupby("unit_key")["time_s"].max().min())
    rows = []
    for key, c in curves.sort_values("step").groupby("unit_key"):
        t = c["time_s"].fillna(0.0).to_numpy()
        rows.append(
            {"unit_key": key, "val_elbo_at_budget": float(np.interp(budget, t, c["val_elbo"])), "budget_s": budget}
        )
    return pd.DataFrame(rows)


def final_table(curves: pd.DataFrame, results: pd.DataFrame, target: float) -> pd.DataFrame:
    """One row per configuration: held-out bound ± SE over seeds, time/steps to target, steps per second."""
    res = results.merge(reach(curves, target), on="unit_key", how="left").merge(at_budget(curves), on="unit_key")
    res["label"] = _label(res)
    out = []
    for lab, g in res.groupby("label", sort=False):
        out.append(
            {
                "estimator": g["estimator"].iloc[0],
                "label": lab,
                "objective": g["objective"].iloc[0],
                "seeds": len(g),
                "test_bound": g["test_bound"].mean(),
                "test_bound_se": _se(g["test_bound"]),
                "test_bound_k": int(g["test_bound_k"].iloc[0]),
                "test_elbo": g["test_elbo"].mean(),
                "target_elbo": target,
                "reached": int(g["steps_to_target"].notna().sum()),
                "steps_to_target": g["steps_to_target"].mean(),
                "time_to_target_s": g["time_to_target_s"].mean(),
                "steps_per_s": g["steps_per_s"].mean(),
                "steps_per_s_se": _se(g["steps_per_s"]),
                "val_elbo_at_budget": g["val_elbo_at_budget"].mean(),
                "budget_s": g["budget_s"].iloc[0],
                "grad_var_mean": g["grad_var_mean"].mean(),
                "train_time_s": g["train_time_s"].mean(),
                "unbiased": bool(g["unbiased"].all()),
            }
        )
    return pd.DataFrame(out).sort_values("test_bound", ascending=False).reset_index(drop=True)


def _curve_figure(curves: pd.DataFrame, x: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    c = curves.assign(label=_label(curves))
    for lab, g in c.groupby("label", sort=True):
        agg = g.groupby("step").agg(y=("val_elbo", "mean"), se=("val_elbo", _se), t=("time_s", "mean"))
        xs = agg.index.to_numpy(float) if x == "step" else agg["t"].to_numpy()
        (line,) = ax.plot(xs, agg["y"], label=lab, lw=1.4)
        if agg["se"].notna().any():
            ax.fill_between(xs, agg["y"] - agg["se"], agg["y"] + agg["se"], color=line.get_color(), alpha=0.2, lw=0)
    later = c.loc[c["step"] > 0, "val_elbo"]
    if len(later):  # the untrained model's ELBO would squash the curves
        ax.set_ylim(bottom=float(later.quantile(0.05)), top=float(later.max()) + 0.02 * abs(float(later.max())))
    ax.set_xlabel("optimizer step" if x == "step" else "training time (s, device-synchronized)")
    ax.set_ylabel("held-out ELBO (val, per example)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _uri(fig)


def _variance_figure(table: pd.DataFrame, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    t = table[table["grad_var_mean"] > 0]
    for unb, mk in ((True, "o"), (False, "x")):
        sub = t[t["unbiased"] == unb]
        ax.scatter(
            sub["grad_var_mean"],
            sub["steps_to_target"],
            s=28,
            marker=mk,
            label="unbiased" if unb else "biased (relaxation)",
        )
    ax.legend(fontsize=7)
    for _, r in t.iterrows():
        ax.annotate(
            r["label"],
            (r["grad_var_mean"], r["steps_to_target"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("mean online encoder-gradient variance (EMA, mean over weights)")
    ax.set_ylabel("steps to reach the target held-out ELBO")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _uri(fig)


def training_section(curves: pd.DataFrame, results: pd.DataFrame, target: float | None = None) -> dict[str, Any]:
    """Figures (PNG data URIs), tables and notes for the training runs in ``curves`` / ``results``."""
    figures: dict[str, str] = {}
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for wl, cw in curves.groupby("workload"):
        rw = results[results["workload"] == wl]
        c = cw[cw["unit_key"].isin(rw["unit_key"])]
        last = c.sort_values("step").groupby("unit_key").tail(1).assign(label=lambda d: _label(d))
        tgt = float(target if target is not None else last.groupby("label")["val_elbo"].mean().min())
        table = final_table(c, rw, tgt)
        name = "final" if curves["workload"].nunique() == 1 else f"final: {wl}"
        tables[name] = table
        figures[f"{wl}: held-out ELBO vs step"] = _curve_figure(
            c, "step", f"{wl}: held-out ELBO vs step (± SE over seeds)"
        )
        figures[f"{wl}: held-out ELBO vs seconds"] = _curve_figure(c, "time", f"{wl}: held-out ELBO vs training time")
        figures[f"{wl}: variance vs speed"] = _variance_figure(
            table, f"{wl}: gradient variance vs steps to ELBO ≥ {tgt:.2f}"
        )
        ok = table.dropna(subset=["steps_to_target", "grad_var_mean"])
        if len(ok) >= 3:
            rho, p = stats.spearmanr(ok["grad_var_mean"], ok["steps_to_target"])
            notes.append(
                f"{wl}: Spearman rank correlation of variance with steps to target: ρ = {rho:.2f} "
                f"(p = {p:.2g}, {len(ok)} estimators)"
            )
        best, fast = table.iloc[0], table.sort_values("val_elbo_at_budget", ascending=False).iloc[0]
        notes.append(
            f"{wl}: best held-out bound: {best['label']} {best['test_bound']:.3f} ± {best['test_bound_se']:.3f}; "
            f"best held-out ELBO after {fast['budget_s']:.1f} s of training: {fast['label']} "
            f"{fast['val_elbo_at_budget']:.3f}"
        )
    return {"figures": figures, "tables": tables, "notes": notes}


def compare_training(A: pd.DataFrame, B: pd.DataFrame) -> pd.DataFrame:
    """Per configuration present in both runs: test bound B − A with a Welch 95% interval over seeds, and the
    steps-per-second ratio B / A (``significant``: the bound interval excludes 0)."""
    keys = [k for k in CONFIG if k in A.columns and k in B.columns]
    ga, gb = A.groupby(keys), B.groupby(keys)
    rows = []
    for key in sorted(set(ga.groups) & set(gb.groups), key=str):
        a, b = ga.get_group(key)["test_bound"], gb.get_group(key)["test_bound"]
        diff = b.mean() - a.mean()
        va, vb = a.var(ddof=1) / len(a) if len(a) > 1 else math.nan, b.var(ddof=1) / len(b) if len(b) > 1 else math.nan
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if len(a) > 1 and len(b) > 1 else math.nan
        half = float(stats.t.ppf(0.975, df)) * se if np.isfinite(df) and df > 0 else math.nan
        speed = gb.get_group(key)["steps_per_s"].mean() / ga.get_group(key)["steps_per_s"].mean()
        rows.append(
            {
                **dict(zip(keys, key)),
                "seeds_a": len(a),
                "seeds_b": len(b),
                "bound_diff": diff,
                "bound_diff_ci_low": diff - half,
                "bound_diff_ci_high": diff + half,
                "significant": bool(abs(diff) > half) if np.isfinite(half) else False,
                "steps_per_s_ratio": speed,
            }
        )
    return pd.DataFrame(rows)


def load_training_runs(run_dirs: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenated (curves, results) of training run directories (``run_id`` column added to curves)."""
    curves, results = [], []
    for d in map(Path, run_dirs):
        for name in ("curves.parquet", "results.parquet"):
            if not (d / name).exists():
                raise FileNotFoundError(f"{d}: not a training run directory (no {name})")
        curves.append(pd.read_parquet(d / "curves.parquet").assign(run_id=d.name))
        results.append(pd.read_parquet(d / "results.parquet"))
    return pd.concat(curves, ignore_index=True), pd.concat(results, ignore_index=True)


def is_training_run(run_dir: str | Any) -> bool:
    """True when ``run_dir``'s meta.json says ``kind = "training"`` (written by ``stochgrad train``)."""
    import json

    try:
        return json.loads((Path(run_dir) / "meta.json").read_text()).get("kind") == "training"
    except (OSError, ValueError):
        return False


def write_html(run_dirs: list[str], out: str) -> str:
    """The report of training runs: :func:`training_section` rendered with the report's style and scripts
    (sortable, filterable tables), written atomically; ``stochgrad report`` calls it for training runs."""
    sec = training_section(*load_training_runs(run_dirs))
    ctx = {
        "title": "stochgrad training report — " + ", ".join(Path(d).name for d in run_dirs),
        "generated": R.now(),
        "notes": sec["notes"],
        "tables": [(name, simple_table(t, cls="plain")) for name, t in sec["tables"].items()],
        "figures": list(sec["figures"].items()),
    }
    return str(R.write(Path(out), R.render(ctx, "training.html.j2")))


def compare_text(run_a: str | Any, run_b: str | Any) -> str:
    """``stochgrad compare`` on two training runs: the held-out bound difference per configuration."""
    _, A = load_training_runs([run_a])
    _, B = load_training_runs([run_b])
    res = compare_training(A, B)
    if res.empty:
        return "no training configuration is present in both runs"
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        return "test bound B − A (Welch 95% CI over seeds) and steps/s ratio B / A\n" + res.to_string(index=False)


if __name__ == "__main__":  # python -m harness.report.training RUN_DIR [RUN_DIR ...] -o training.html
    import argparse

    ap = argparse.ArgumentParser(description="standalone HTML page of training runs")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("-o", "--output", default="training.html")
    a = ap.parse_args()
    print(write_html(a.runs, a.output))
