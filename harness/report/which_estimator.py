"""Which estimator? Per workload, checkpoint and gradient (eta / encoder), the best at equal cost, with CIs.

``python -m harness.report.which_estimator RUN_DIR [--param encoder] [--backend torch] [--rank-by time|evals|samples]``
prints, for every (workload, configuration, checkpoint), the unbiased estimator that ranks best and the runner-up
with their 95% CIs, by ``rank_by`` (:mod:`harness.results.ranking`): ``time`` (default) = ``efficiency``,
variance × time per call; ``evals`` = ``variance_per_eval``, variance × evaluations per estimate; ``samples`` =
``variance_total`` at equal L.  The values are per coordinate for time and evals (every estimator of a workload
has the same coordinates, so the order is that of the totals).  ``clear`` says whether the intervals separate the
two; ``at_equal_time`` / ``at_equal_evals`` / ``at_equal_L`` name the winner under each ranking ("unavailable" where
the run lacks the measure: ``variance_per_eval`` in runs made before issue 19); ``differs`` is one line where the
equal-L winner differs from the equal-cost one.  The best biased estimator is listed with its ``bias_z_truth`` (bias
over the combined estimate and truth standard errors).  Oracle baselines are never named: they are reference lines
only.  Whether an estimator is an oracle comes from its declaration, as the run recorded it: the rows' ``oracle``
column, or for runs made before the column existed the run's catalog (``meta.json`` ``estimators``) — never from its
name.  The ranking: ``--rank-by``, else the run's recorded ``rank_by`` (its suite's), else time.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from harness.report.data import oracle_flags
from harness.results.ranking import DEFAULT_RANK_BY, RANK_BY, RANK_LABELS, check_rank_by, resolve_rank_by
from harness.runs.store import load_run

COLUMNS = {"time": "efficiency", "evals": "variance_per_eval", "samples": "variance_total"}
WINNER_COLUMN = {"time": "at_equal_time", "evals": "at_equal_evals", "samples": "at_equal_L"}


def _value(d: pd.DataFrame, rank_by: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(value, low, high) of the ranking's measure per row (NaN where the run lacks it)."""
    col = COLUMNS[rank_by]

    def num(c: str) -> pd.Series:
        return pd.to_numeric(d[c], errors="coerce").astype(float) if c in d.columns else pd.Series(np.nan, d.index)

    return num(col), num(f"{col}_ci_low"), num(f"{col}_ci_high")


def _best(unb: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """The unbiased rows with a finite measure, best first."""
    v, lo, hi = _value(unb, rank_by)
    return unb.assign(_v=v, _lo=lo, _hi=hi)[np.isfinite(v)].sort_values("_v")


def _fmt(r: pd.Series) -> str:
    ci = f" [{r['_lo']:.4g}, {r['_hi']:.4g}]" if math.isfinite(r["_lo"]) and math.isfinite(r["_hi"]) else ""
    return f"{r['_v']:.4g}{ci}"


def which_estimator(
    df: pd.DataFrame,
    param: str = "encoder",
    backend: str | None = None,
    catalog: Iterable[Mapping[str, Any]] = (),
    rank_by: str = DEFAULT_RANK_BY,
) -> pd.DataFrame:
    """One row per (workload, workload_config, checkpoint): best and runner-up unbiased by ``rank_by``, the winner
    under every ranking, best biased (oracle baselines, as declared, excluded: never a recommendation).
    ``catalog``: the run's ``meta.json`` ``estimators`` (read for runs whose rows lack the ``oracle`` column)."""
    rank_by = check_rank_by(rank_by)
    d = df[(df["param"] == param) & df["workload"].notna()].copy()
    d = d[~oracle_flags(d, catalog)]
    if "workload_config" not in d.columns:  # runs made before the column existed: the label without "@step"
        d["workload_config"] = d["problem"].str.replace(r"@\d+", "", regex=True)
    if backend:
        d = d[d["backend"] == backend]
    out = []
    for key, g in d.groupby(["workload", "workload_config", "checkpoint"], sort=True):
        declared = g["unbiased"] != False  # noqa: E712  (None: not recorded, counts as unbiased)
        unb, bia = g[declared], g[~declared].sort_values("variance_total")
        row: dict[str, Any] = dict(zip(["workload", "config", "checkpoint"], key))
        row["rank_by"] = rank_by
        ranked = _best(unb, rank_by)
        for tag, i in (("best", 0), ("second", 1)):
            if len(ranked) > i:
                r = ranked.iloc[i]
                row[tag] = f"{r['estimator']}[{r['backend']}]"
                row[f"{tag}_value"] = _fmt(r)
        if len(ranked) > 1:
            row["clear"] = bool(ranked.iloc[0]["_hi"] < ranked.iloc[1]["_lo"])
        names = {}
        for r_by in RANK_BY:
            rr = _best(unb, r_by)
            names[r_by] = f"{rr.iloc[0]['estimator']}[{rr.iloc[0]['backend']}]" if len(rr) else "unavailable"
            row[WINNER_COLUMN[r_by]] = names[r_by]
        other = "time" if rank_by == "samples" else "samples"
        mine = names[rank_by]
        row["differs"] = (
            f"{RANK_LABELS[other]} the winner would be {names[other]}"
            if "unavailable" not in (names[other], mine) and names[other] != mine
            else ""
        )
        if len(bia):
            b = bia.iloc[0]
            row["best_biased"] = (
                f"{b['estimator']}[{b['backend']}] {b['variance_total']:.4g} bias_z={b['bias_z_truth']:.1f}"
            )
        row["truth"] = g["exact_method"].iloc[0]
        out.append(row)
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.report.which_estimator", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--param", default="encoder", choices=["encoder", "eta"])
    ap.add_argument("--backend", default=None)
    ap.add_argument(
        "--rank-by", choices=list(RANK_BY), default=None, help="default: the run's recorded rank_by, else time"
    )
    a = ap.parse_args(argv)
    try:
        df, meta = load_run(a.run_dir)
    except Exception as exc:  # not a run directory
        print(f"error: {a.run_dir}: {exc}", file=sys.stderr)
        return 2
    if "workload" not in df.columns:
        print(f"error: {a.run_dir}: no workload rows", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 60):
        rank_by = resolve_rank_by(a.rank_by, [meta])
        print(f"ranked {RANK_LABELS[rank_by]} (rank_by = {rank_by!r})")
        table = which_estimator(df, a.param, a.backend, meta.get("estimators") or (), rank_by)
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
