"""The first screen's family verdicts as text: ``python -m harness.report.verdicts RUN_DIR [...] [--rank-by R]``.

The same verdicts, line for line, as the report's first screen (:func:`harness.report.ranking.first_screen`): the
ranking in force, the other cost-fair ranking beside it, and the line where the equal-L winner differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report.data import load_runs, pool_platforms
from harness.report.ranking import UNAVAILABLE, first_screen, in_force, unavailable
from harness.report.workloads import relabel_groups, workload_groups
from harness.results.ranking import RANK_BY, RANK_LABELS, resolve_rank_by
from harness.runs.store import RunDirError


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.report.verdicts RUN_DIR [RUN_DIR ...] [--rank-by R]``: the first screen's family verdicts
    as text (the report's, line for line)."""
    ap = argparse.ArgumentParser(prog="python -m harness.report.verdicts", description=main.__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--rank-by", choices=list(RANK_BY), default=None, help="default: the run's rank_by, else time")
    a = ap.parse_args(argv)
    try:
        df, infos = load_runs(a.runs)
    except (OSError, RunDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if df.empty:
        print("no results", file=sys.stderr)
        return 2
    rank_by = resolve_rank_by(a.rank_by, [i.meta for i in infos])
    df = relabel_groups(df)
    wg = workload_groups(df)
    pooled = pool_platforms(df)
    df, pooled = df[~df["group"].isin(wg)], pooled[~pooled["group"].isin(wg)]
    used = in_force(df, pooled, rank_by)
    if used != rank_by:
        print(f"{RANK_LABELS[rank_by]} was asked for, but {UNAVAILABLE[rank_by]}: ranked {RANK_LABELS[used]}")
    for m in unavailable(df, pooled):
        print(f"not available in this run — {m}")
    for blk in first_screen(df, pooled, used):
        print("\n".join(blk.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
