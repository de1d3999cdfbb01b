"""Scale-out measurements (docs/notes/scale-out.md): timing bias under parallelism, wall-clock, ETA error.

    python -m suites.benchmarks.scaleout timing-bias            # per-call times: 1 worker vs 2 (lock off / on)
    python -m suites.benchmarks.scaleout wallclock SUITE [--stride K]   # in-process vs --workers 2
    python -m suites.benchmarks.scaleout eta RUN_DIR...          # ETA at 10% of the cells vs the real remainder
    python -m suites.benchmarks.scaleout eta-replay RUN_DIR SUITE [--stride K]  # replayed from a serial run

``--stride K`` keeps every K-th cell of the suite in suite order (a representative sub-suite of a long suite).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness.runs.executors import DaskExecutor, Executor, InProcessExecutor
from harness.runs.suite_run import execute
from harness.suite.expand import expand

BIAS_SUITE = {
    "suite": {"name": "timing_bias", "seed": 1, "replicates": 500, "timing_max_s": 0.3},
    "sweep": [
        {
            "estimators": ["pathwise", "score_function", "score_function_rloo", "measure_valued"],
            "backends": ["numpy", "torch"],
            "n_samples": [1, 16],
            "problems": [{"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}, "dims": [1, 64]}],
        }
    ],
}


def run_with(executor: Executor, suite: object, out: Path, stride: int = 1) -> tuple[pd.DataFrame, float]:
    exp = expand(str(suite) if not isinstance(suite, dict) else "<dict>", suite if isinstance(suite, dict) else None)
    exp.cells = exp.cells[::stride]
    t0 = time.perf_counter()
    execute(exp, suite, out, executor=executor, stream=sys.stderr)
    return pd.read_parquet(out / "results.parquet"), time.perf_counter() - t0


def _ratio_line(name: str, r: pd.Series) -> str:
    """Median ratio with its distribution-free 95% interval (binomial order statistics), IQR and range."""
    from scipy.stats import binom

    r = np.sort(r.dropna().to_numpy())
    n = len(r)
    lo = max(int(binom.ppf(0.025, n, 0.5)) - 1, 0)
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return (
        f"{name}: median ratio {med:.3f} (95% CI {r[lo]:.3f}-{r[n - 1 - lo]:.3f}; IQR {q1:.3f}-{q3:.3f}; "
        f"range {r[0]:.3f}-{r[-1]:.3f}; {n} cells)"
    )


def timing_bias(tmp: Path, reps: int = 2) -> None:
    """The same cells timed with 1 worker and with 2 (timing lock off / on), configurations interleaved ``reps``
    times; per cell the median over repetitions; the 1-worker repetitions against each other give the noise floor.
    Both the median per-call time and the fastest timing sample (``time_min_s``, less sensitive to other load)."""
    configs = {
        "1 worker": lambda: DaskExecutor(workers=1, exclusive_timing=False),
        "2 workers, no lock": lambda: DaskExecutor(workers=2, exclusive_timing=False),
        "2 workers, timing lock": lambda: DaskExecutor(workers=2, exclusive_timing=True),
    }
    times: dict[str, list[pd.DataFrame]] = {name: [] for name in configs}
    for rep in range(reps):
        for name, make in configs.items():
            with make() as ex:
                df, wall = run_with(ex, BIAS_SUITE, tmp / f"{rep}-{name.replace(' ', '_').replace(',', '')}")
            times[name].append(df.drop_duplicates("cell_key").set_index("cell_key")[["time_median_s", "time_min_s"]])
            print(f"rep {rep} {name}: {df.cell_key.nunique()} cells in {wall:.1f} s", flush=True)
    for col in ("time_median_s", "time_min_s"):
        med = {name: pd.concat([t[col] for t in ts], axis=1).median(axis=1) for name, ts in times.items()}
        if reps > 1:
            one = times["1 worker"]
            print(_ratio_line(f"[{col}] noise floor: 1 worker rep 2 / rep 1", one[1][col] / one[0][col]))
        for name in list(configs)[1:]:
            print(_ratio_line(f"[{col}] {name} / 1 worker", med[name] / med["1 worker"]))


def wallclock(suite: Path, stride: int, tmp: Path, keep: Path | None) -> None:
    for name, make in (("in-process", InProcessExecutor), ("--workers 2", lambda: DaskExecutor(workers=2))):
        t0 = time.perf_counter()
        out = (keep or tmp) / name.replace(" ", "").replace("-", "")
        with make() as ex:
            df, run_s = run_with(ex, suite, out, stride)
        total = time.perf_counter() - t0
        print(
            f"{suite} (stride {stride}) {name}: {df.cell_key.nunique()} cells, run {run_s:.1f} s, "
            f"with cluster start/stop {total:.1f} s",
            flush=True,
        )
        eta([out])


def eta(run_dirs: list[Path]) -> None:
    for d in run_dirs:
        c = json.loads((d / "meta.json").read_text()).get("eta_check")
        if not c or "real_remaining_s" not in c:
            print(f"{d}: no complete eta_check")
            continue
        real = c["real_remaining_s"]
        print(
            f"{d}: at {c['at_cells']}/{c['of_cells']} cells ({c['elapsed_s']:.1f} s): real remaining {real:.1f} s; "
            f"equal-cost ETA {c['eta_equal_cost_s']:.1f} s (error {c['eta_equal_cost_s'] / real - 1:+.0%}); "
            f"cost-model ETA {c['eta_model_s'] or float('nan'):.1f} s "
            f"(error {(c['eta_model_s'] or float('nan')) / real - 1:+.0%})"
        )


def eta_replay(run_dir: Path, suite: Path, stride: int, fractions: tuple[float, ...] = (0.1, 0.25, 0.5)) -> None:
    """Replay a serial run's per-cell seconds: the ETA at each fraction of the cells against the real remainder, for the
    suite order and the interleaved order, with the equal-cost ETA and the cost model."""
    from harness.runs.progress import CostModel, interleave
    from harness.runs.store import RunStore

    secs = {k: r["seconds"] for k, r in RunStore(run_dir).finished().items() if r["status"] == "ok"}
    cells = [c for c in expand(str(suite)).cells[::stride] if c.key() in secs]
    orders = (("suite order", cells), ("interleaved", interleave(cells)))
    for (order_name, order), at in ((o, f) for f in fractions for o in orders):
        k = max(1, int(np.ceil(at * len(order))))
        done, rest = order[:k], order[k:]
        elapsed, real = sum(secs[c.key()] for c in done), sum(secs[c.key()] for c in rest)
        model = CostModel()
        for c in done:
            model.observe(c, secs[c.key()])
        predicted = sum(model.expected(c) for c in rest)  # type: ignore[misc]
        equal = elapsed / k * len(rest)
        print(
            f"{order_name}: at {k}/{len(order)} cells: real remaining {real:.1f} s; equal-cost ETA {equal:.1f} s "
            f"({equal / real - 1:+.0%}); cost-model ETA {predicted:.1f} s ({predicted / real - 1:+.0%})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tb = sub.add_parser("timing-bias")
    tb.add_argument("--reps", type=int, default=2)
    w = sub.add_parser("wallclock")
    w.add_argument("suite", type=Path)
    w.add_argument("--stride", type=int, default=1)
    w.add_argument("--keep", type=Path, help="write the run directories here (kept)")
    e = sub.add_parser("eta")
    e.add_argument("runs", nargs="+", type=Path)
    rp = sub.add_parser("eta-replay")
    rp.add_argument("run", type=Path)
    rp.add_argument("suite", type=Path)
    rp.add_argument("--stride", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.cmd == "timing-bias":
            timing_bias(Path(tmp), a.reps)
        elif a.cmd == "wallclock":
            wallclock(a.suite, a.stride, Path(tmp), a.keep)
        elif a.cmd == "eta":
            eta(a.runs)
        else:
            eta_replay(a.run, a.suite, a.stride)


if __name__ == "__main__":
    main()
