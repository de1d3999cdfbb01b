"""Where ``make bench`` spends its time (docs/performance.md, "make bench and the report").

    python -m suites.benchmarks.bench_time cells RUN_DIR             # a run's cell seconds by backend and part
    python -m suites.benchmarks.bench_time report RUN_DIR [--workers 0 2] [--reps 2]   # stochgrad report's cost

``cells``: per backend, the number of cells and the seconds the cells recorded — ``estimate_seconds`` (the
replicates, first-chunk compilation included), ``first_call_s`` (the R = 1 timing callable's first call: its
compilation for JAX), the timing samples (``time_samples × time_inner_loops × time_median_s``) and
``readout_seconds`` (from the replicates to the rows: a workload's chain rule to the encoder weights, the statistics)
— against the run's wall-clock from ``meta.json``.

``report``: ``stochgrad report RUN_DIR`` in a fresh process per repetition, for each ``--workers`` value
(interleaved), with its wall-clock and the CPU seconds of the whole process tree (the figure workers included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def cells(run_dir: Path) -> pd.DataFrame:
    df = pd.read_parquet(run_dir / "results.parquet").drop_duplicates("cell_key")
    df = df.assign(timing_s=df["time_samples"] * df["time_inner_loops"] * df["time_median_s"])
    if "readout_seconds" not in df:  # a run from before the column
        df = df.assign(readout_seconds=float("nan"))
    out = df.groupby("backend").agg(
        cells=("cell_key", "size"),
        estimate_s=("estimate_seconds", "sum"),
        first_call_s=("first_call_s", "sum"),
        timing_s=("timing_s", "sum"),
        readout_s=("readout_seconds", "sum"),
    )
    out.loc["all"] = out.sum()
    meta = json.loads((run_dir / "meta.json").read_text())
    wall = (dt.datetime.fromisoformat(meta["finished"]) - dt.datetime.fromisoformat(meta["started"])).total_seconds()
    print(f"{run_dir}: {meta.get('cells_total')} cells, {wall:.0f} s wall-clock (meta.json started -> finished)")
    return out.round(1)


def report(run_dir: Path, workers: list[int], reps: int) -> pd.DataFrame:
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for w in workers:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                cmd = [sys.executable, "-m", "harness.cli.main", "report", str(run_dir), "-o", f"{tmp}/r{w}.html"]
                subprocess.run([*cmd, "--workers", str(w)], check=True, env=env, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                size = Path(f"{tmp}/r{w}.html").stat().st_size
                rows.append({"rep": rep, "workers": w, "wall_s": wall, "cpu_s": cpu, "bytes": size})
    return pd.DataFrame(rows).round(2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cells")
    c.add_argument("run", type=Path)
    r = sub.add_parser("report")
    r.add_argument("run", type=Path)
    r.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    r.add_argument("--reps", type=int, default=2)
    a = ap.parse_args(argv)
    print(os.getloadavg())
    out = cells(a.run) if a.cmd == "cells" else report(a.run, a.workers, a.reps)
    print(out.to_string())
    print(os.getloadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
