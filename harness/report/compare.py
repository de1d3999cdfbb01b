"""Compare two runs cell by cell: variance and time ratios (B / A) with 95% confidence intervals.

Cells are matched by ``cell_key`` (the hash of the cell's identity: estimator, backend, device, problem, L,
hyperparameters, dtype) and parameter; runs that predate cell keys are matched on that identity in words.  Intervals, on the log scale (delta method):

- variance: ``se(log v) = variance_se / variance`` per run (``variance_se`` from the results; older runs:
  derived from the CI), ``log(vB/vA) ± z sqrt(se_A^2 + se_B^2)``;
- time per call: the SE of a median from the timing samples' spread, ``1.2533 (IQR / 1.349) / sqrt(n)``
  (normal approximation; n = ``time_samples``), with the IQR floored at 1% of the median (timer resolution
  and quantization can report IQR = 0); same log-ratio interval.

A change is flagged only when its interval excludes 1: ``↑``/``↓`` at 95% per comparison, ``↑↑``/``↓↓`` when it
stays significant after Bonferroni over all comparisons (the expected number of 95% false flags is shown).
Time intervals reflect the noise within each run, not drift between machines or load: the median time ratio
over all cells is printed as the overall speed factor to read them against.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report import render as R
from harness.report.data import load_runs
from harness.report.plots_compare import ratio_scatter
from harness.report.tables import esc, fmt, simple_table
from harness.report.training import compare_text, is_training_run
from harness.runs.store import RunDirError
from harness.stats.metrics import Z95, bonferroni_z, time_se

TERMINAL_ROWS = 40
TIME_IQR_FLOOR = 0.01


def _keyed(df: pd.DataFrame, identity: bool) -> pd.DataFrame:
    """Rows keyed by ``cell_key``, or by the readable identity when a run predates cell keys."""
    df = df.copy()
    if identity:
        df["cell_key"] = df["identity"]
    df["label"] = (
        df["config"]
        + " ["
        + df["backend"]
        + ":"
        + df["device"]
        + "] "
        + df["problem"]
        + " L="
        + df["n_samples"].astype(str)
    )
    return df.drop_duplicates(["cell_key", "param"])


def _ratio(
    a: pd.Series,
    b: pd.Series,
    sa: pd.Series,
    sb: pd.Series,
    exact_a: pd.Series | None = None,
    exact_b: pd.Series | None = None,
) -> pd.DataFrame:
    """b/a with log-scale SE; exact zeros on both sides give ratio 1 with no interval."""
    a, b = a.astype(float), b.astype(float)
    ea = exact_a if exact_a is not None else a == 0
    eb = exact_b if exact_b is not None else b == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = b / a
        lse = np.sqrt((sa / a) ** 2 + (sb / b) ** 2)
    r = r.where(~(ea & eb), 1.0)
    lse = lse.where(~(ea & eb), 0.0)
    one_exact = ea ^ eb
    r = r.where(~one_exact, np.where(ea, np.inf, 0.0))
    # one side exact: significant when the other side's interval excludes 0
    other_lo = np.where(ea, b - Z95 * sb, a - Z95 * sa)
    return pd.DataFrame(
        {"ratio": r, "lse": lse, "one_exact": one_exact, "other_pos": one_exact & (other_lo > 0), "both_exact": ea & eb}
    )


def _flags(rt: pd.DataFrame, zc: float) -> pd.DataFrame:
    lr = np.log(rt["ratio"].where(rt["ratio"] > 0))
    lo95, hi95 = np.exp(lr - Z95 * rt["lse"]), np.exp(lr + Z95 * rt["lse"])
    sig = ((lo95 > 1) | (hi95 < 1)) & ~rt["one_exact"]
    fw = ((np.exp(lr - zc * rt["lse"]) > 1) | (np.exp(lr + zc * rt["lse"]) < 1)) & ~rt["one_exact"]
    sig = sig | rt["other_pos"]
    fw = fw | rt["other_pos"]
    up = rt["ratio"] > 1
    flag = np.where(fw, np.where(up, "↑↑", "↓↓"), np.where(sig, np.where(up, "↑", "↓"), ""))
    return pd.DataFrame(
        {"lo": lo95.where(~rt["one_exact"]), "hi": hi95.where(~rt["one_exact"]), "sig": sig, "fw": fw, "flag": flag},
        index=rt.index,
    )


def compare_frames(A: pd.DataFrame, B: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Matched rows with ratios, flags; labels of cells only in A and only in B."""
    derived = bool(A["key_derived"].any() or B["key_derived"].any())
    A, B = _keyed(A, derived), _keyed(B, derived)
    m = A.merge(B, on=["cell_key", "param"], suffixes=("_a", "_b"))
    ka, kb = set(A["cell_key"]), set(B["cell_key"])
    only_a = sorted(A[~A["cell_key"].isin(kb)].drop_duplicates("cell_key")["label"])
    only_b = sorted(B[~B["cell_key"].isin(ka)].drop_duplicates("cell_key")["label"])
    if m.empty:
        return m, only_a, only_b
    v = _ratio(
        m["variance_a"], m["variance_b"], m["variance_se_a"], m["variance_se_b"], m["exact_est_a"], m["exact_est_b"]
    )
    ta = time_se(
        m["time_median_s_a"], np.maximum(m["time_iqr_s_a"], TIME_IQR_FLOOR * m["time_median_s_a"]), m["time_samples_a"]
    )
    tb = time_se(
        m["time_median_s_b"], np.maximum(m["time_iqr_s_b"], TIME_IQR_FLOOR * m["time_median_s_b"]), m["time_samples_b"]
    )
    t = _ratio(
        m["time_median_s_a"],
        m["time_median_s_b"],
        ta,
        tb,
        pd.Series(False, index=m.index),
        pd.Series(False, index=m.index),
    )
    nv = int(v["ratio"].notna().sum())
    cells = m.drop_duplicates("cell_key").index
    nt = int(t.loc[cells, "ratio"].notna().sum())
    fv, ft = _flags(v, bonferroni_z(nv)), _flags(t, bonferroni_z(nt))
    out = pd.DataFrame(
        {
            "label": m["label_a"],
            "param": m["param"],
            "cell_key": m["cell_key"],
            "var_a": m["variance_a"],
            "var_b": m["variance_b"],
            "var_ratio": v["ratio"],
            "var_lo": fv["lo"],
            "var_hi": fv["hi"],
            "var_exact": v["both_exact"],
            "var_sig": fv["sig"],
            "var_fw": fv["fw"],
            "var_flag": fv["flag"],
            "time_a": m["time_median_s_a"],
            "time_b": m["time_median_s_b"],
            "time_ratio": t["ratio"],
            "time_lo": ft["lo"],
            "time_hi": ft["hi"],
            "time_sig": ft["sig"] & t["ratio"].notna(),
            "time_fw": ft["fw"] & t["ratio"].notna(),
            "time_flag": np.where(t["ratio"].notna(), ft["flag"], ""),
        }
    )
    out.attrs.update(n_var=nv, n_time=nt, zc_var=bonferroni_z(nv), zc_time=bonferroni_z(nt))
    return out, only_a, only_b


def _ci(r: float, lo: float, hi: float, both_exact: bool = False) -> str:
    if both_exact:
        return "= (both exact)"
    if not np.isfinite(r):
        return "n/a" if math.isnan(r) else ("∞ (A exact)" if r > 0 else "—")
    if r == 0:
        return "0 (B exact)"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{r:.3g}"
    return f"{r:.3g} [{lo:.3g}, {hi:.3g}]"


def summary_lines(res: pd.DataFrame, only_a: list[str], only_b: list[str], ia: Any, ib: Any) -> list[str]:
    def ident(i: Any) -> str:
        m = i.meta
        return (
            f"{i.run_id} (suite {m.get('suite')}, commit {str(m.get('git_commit'))[:12]}, {m.get('started', '?')[:19]})"
        )

    lines = [
        f"A = {ident(ia)}",
        f"B = {ident(ib)}",
        f"matched {res['cell_key'].nunique() if not res.empty else 0} cells ({len(res)} cell×param rows); "
        f"only in A: {len(only_a)} cells; only in B: {len(only_b)} cells",
    ]
    if res.empty:
        return lines
    nv, nt = res.attrs["n_var"], res.attrs["n_time"]
    cells = res.drop_duplicates("cell_key")
    for what, pre, d, n, zc in (
        ("variance", "var", res, nv, res.attrs["zc_var"]),
        ("time", "time", cells, nt, res.attrs["zc_time"]),
    ):
        sig, fw, r = d[f"{pre}_sig"], d[f"{pre}_fw"], d[f"{pre}_ratio"]
        lines.append(
            f"{what} B/A: {int((sig & (r > 1)).sum())} higher, {int((sig & (r < 1)).sum())} lower at 95% "
            f"(≈{0.05 * n:.1f} expected by chance among {n}); family-wise (Bonferroni |z|>{zc:.2f}): "
            f"{int((fw & (r > 1)).sum())} higher, {int((fw & (r < 1)).sum())} lower"
        )
    tr = cells["time_ratio"].replace([np.inf, 0], np.nan).dropna()
    if not tr.empty:
        q1, med, q3 = np.exp(np.percentile(np.log(tr), [25, 50, 75]))
        lines.append(
            f"overall speed factor (median time ratio B/A over cells): {med:.3g} (IQR {q1:.3g}–{q3:.3g}); "
            "time intervals reflect within-run noise only"
        )
    return lines


def terminal_table(res: pd.DataFrame, width: int = 60) -> list[str]:
    if res.empty:
        return []
    changed = res[res["var_sig"] | res["time_sig"]].copy()
    show = changed if not changed.empty else res
    show = show.assign(
        _k=np.abs(np.log(show["var_ratio"].replace([0, np.inf], np.nan))).fillna(0)
        + np.abs(np.log(show["time_ratio"].replace([0, np.inf], np.nan))).fillna(0)
    )
    show = show.sort_values(["var_fw", "time_fw", "_k"], ascending=False)
    title = (
        f"significant changes ({len(changed)} rows)"
        if not changed.empty
        else "no significant change; all rows:"
        if len(res) <= TERMINAL_ROWS
        else "no significant change; first rows:"
    )
    out = [
        "",
        title,
        f"{'cell':{width}s} {'param':8s} {'var A':>9s} {'var B':>9s} {'var B/A [95% CI]':28s} "
        f"{'time B/A [95% CI]':28s}",
    ]
    for r in show.head(TERMINAL_ROWS).itertuples(index=False):
        lab = r.label if len(r.label) <= width else r.label[: width - 1] + "…"
        out.append(
            f"{lab:{width}s} {str(r.param)[:8]:8s} {fmt(r.var_a):>9s} {fmt(r.var_b):>9s} "
            f"{(_ci(r.var_ratio, r.var_lo, r.var_hi, r.var_exact) + ' ' + r.var_flag):28s} "
            f"{_ci(r.time_ratio, r.time_lo, r.time_hi)} {r.time_flag}"
        )
    if len(show) > TERMINAL_ROWS:
        out.append(f"… {len(show) - TERMINAL_ROWS} more rows (write the HTML page with -o)")
    out.append("legend: ↑/↓ interval excludes 1 at 95%; ↑↑/↓↓ also family-wise (Bonferroni); ↑ = B higher (worse)")
    return out


def compare_runs(run_a: Path, run_b: Path, out: Path | None = None) -> tuple[str, Path | None]:
    """Terminal text of the comparison and, when ``out`` is given, the HTML page written there."""

    kinds = [is_training_run(run_a), is_training_run(run_b)]
    if all(kinds):
        return compare_text(run_a, run_b), None
    if any(kinds):
        train, bench = (run_a, run_b) if kinds[0] else (run_b, run_a)
        raise RunDirError(
            f"cannot compare {train} (a training run) with {bench} (a benchmark run): compare runs of the same kind"
        )
    A, (ia,) = load_runs([Path(run_a)])
    B, (ib,) = load_runs([Path(run_b)])
    if A.empty or B.empty:
        res, only_a, only_b = pd.DataFrame(), [], []
    else:
        res, only_a, only_b = compare_frames(A, B)
    text = "\n".join(summary_lines(res, only_a, only_b, ia, ib) + terminal_table(res))
    if out is None:
        return text, None
    ctx = {
        "title": f"stochgrad compare — {ia.run_id} vs {ib.run_id}",
        "generated": R.now(),
        "runs": [
            {"id": f"A: {ia.run_id}", "items": R.run_header(ia, A)},
            {"id": f"B: {ib.run_id}", "items": R.run_header(ib, B)},
        ],
        "summary": summary_lines(res, only_a, only_b, ia, ib),
        "only_a": only_a,
        "only_b": only_b,
        "table": html_table(res) if not res.empty else "",
        "figure": ratio_figure(res) if not res.empty else None,
    }
    return text, R.write(Path(out), R.render(ctx, "compare.html.j2"))


def html_table(res: pd.DataFrame) -> Any:
    d = res.sort_values(["var_fw", "time_fw", "var_sig", "time_sig"], ascending=False)
    view = pd.DataFrame(
        {
            "cell": d["label"],
            "param": d["param"],
            "variance A": d["var_a"],
            "variance B": d["var_b"],
            "variance B/A [95% CI]": [_ci(*x) for x in zip(d["var_ratio"], d["var_lo"], d["var_hi"], d["var_exact"])],
            "Δvar": d["var_flag"],
            "time A [µs]": d["time_a"] * 1e6,
            "time B [µs]": d["time_b"] * 1e6,
            "time B/A [95% CI]": [_ci(*x) for x in zip(d["time_ratio"], d["time_lo"], d["time_hi"])],
            "Δtime": d["time_flag"],
        }
    )
    cls = pd.DataFrame("", index=range(len(view)), columns=view.columns)
    for col, sig, r in (("Δvar", "var_sig", "var_ratio"), ("Δtime", "time_sig", "time_ratio")):
        cls[col] = np.where(d[sig].to_numpy(), np.where(d[r].to_numpy() > 1, "bad", "good"), "")
    return simple_table(view, cls, cls="plain compare", formatters={"cell": lambda s: f"<code>{esc(s)}</code>"})


def ratio_figure(res: pd.DataFrame) -> Any:

    return ratio_scatter(res)
