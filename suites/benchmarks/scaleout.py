"""Scale-out measurements (docs/notes/scale-out.md): timing bias under parallelism, wall-clock, ETA error.

    python suites/benchmarks/scaleout.py timing-bias            # per-call times: 1 worker vs 2 (lock off / on)
    python suites/benchmarks/scaleout.py wallclock SUITE [--stride K]   # in-process vs --workers 2
    python suites/benchmarks/scaleout.py eta RUN_DIR...          # ETA at 10% of the cells vs the real remainder

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

from harness.execute import execute
from harness.executors import DaskExecutor, Executor, InProcessExecutor
from harness.suite import expand

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


def timing_bias(tmp: Path) -> None:
    times = {}
    for name, make in (
        ("1 worker", lambda: DaskExecutor(workers=1, exclusive_timing=False)),
        ("2 workers, no lock", lambda: DaskExecutor(workers=2, exclusive_timing=False)),
        ("2 workers, timing lock", lambda: DaskExecutor(workers=2, exclusive_timing=True)),
    ):
        with make() as ex:
            df, wall = run_with(ex, BIAS_SUITE, tmp / name.replace(" ", "_").replace(",", ""))
        times[name] = df.drop_duplicates("cell_key").set_index("cell_key")["time_median_s"]
        print(f"{name}: {len(df.cell_key.unique())} cells in {wall:.1f} s", flush=True)
    base = times["1 worker"]
    for name in list(times)[1:]:
        r = (times[name] / base).dropna()
        q1, med, q3 = np.percentile(r, [25, 50, 75])
        print(f"{name} / 1 worker: median ratio {med:.3f} (IQR {q1:.3f}-{q3:.3f}, min {r.min():.3f}, "
              f"max {r.max():.3f}, {len(r)} cells)")  # fmt: skip


def wallclock(suite: Path, stride: int, tmp: Path) -> None:
    for name, make in (("in-process", InProcessExecutor), ("--workers 2", lambda: DaskExecutor(workers=2))):
        t0 = time.perf_counter()
        out = tmp / name.replace(" ", "").replace("-", "")
        with make() as ex:
            df, run_s = run_with(ex, suite, out, stride)
        total = time.perf_counter() - t0
        print(f"{suite} (stride {stride}) {name}: {df.cell_key.nunique()} cells, run {run_s:.1f} s, "
              f"with cluster start/stop {total:.1f} s", flush=True)  # fmt: skip
        eta([out])


def eta(run_dirs: list[Path]) -> None:
    for d in run_dirs:
        c = json.loads((d / "meta.json").read_text()).get("eta_check")
        if not c or "real_remaining_s" not in c:
            print(f"{d}: no complete eta_check")
            continue
        real = c["real_remaining_s"]
        print(f"{d}: at {c['at_cells']}/{c['of_cells']} cells ({c['elapsed_s']:.1f} s): real remaining {real:.1f} s; "
              f"equal-cost ETA {c['eta_equal_cost_s']:.1f} s (error {c['eta_equal_cost_s'] / real - 1:+.0%}); "
              f"cost-model ETA {c['eta_model_s'] or float('nan'):.1f} s "
              f"(error {(c['eta_model_s'] or float('nan')) / real - 1:+.0%})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("timing-bias")
    w = sub.add_parser("wallclock")
    w.add_argument("suite", type=Path)
    w.add_argument("--stride", type=int, default=1)
    e = sub.add_parser("eta")
    e.add_argument("runs", nargs="+", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.cmd == "timing-bias":
            timing_bias(Path(tmp))
        elif a.cmd == "wallclock":
            wallclock(a.suite, a.stride, Path(tmp))
        else:
            eta(a.runs)


if __name__ == "__main__":
    main()
