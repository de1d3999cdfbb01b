"""Which estimator? Per workload, checkpoint and gradient (eta / encoder), the lowest total variance, with CIs.

``python -m harness.report.which_estimator RUN_DIR [--param encoder] [--backend torch]`` prints, for every
(workload, configuration, checkpoint), the unbiased estimator with the lowest ``variance_total`` and the
runner-up with their 95% CIs; ``clear`` says whether the intervals separate them; ``most_efficient`` is the
unbiased one with the lowest variance × time per call.  The best biased estimator
is listed with its ``bias_z_truth`` (bias over the combined estimate and truth standard errors).  Oracle
baselines are never named: they are reference lines only.  Whether an estimator is an oracle comes from its
declaration, as the run recorded it: the rows' ``oracle`` column, or for runs made before the column existed the
run's catalog (``meta.json`` ``estimators``) — never from its name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from harness.report.data import oracle_flags
from harness.runs.store import load_run


def which_estimator(
    df: pd.DataFrame, param: str = "encoder", backend: str | None = None, catalog: Iterable[Mapping[str, Any]] = ()
) -> pd.DataFrame:
    """One row per (workload, workload_config, checkpoint): best and runner-up unbiased, best biased (oracle
    baselines, as declared, excluded: never a recommendation).  ``catalog``: the run's ``meta.json``
    ``estimators`` (read for runs whose rows lack the ``oracle`` column)."""
    d = df[(df["param"] == param) & df["workload"].notna()].copy()
    d = d[~oracle_flags(d, catalog)]
    if "workload_config" not in d.columns:  # runs made before the column existed: the label without "@step"
        d["workload_config"] = d["problem"].str.replace(r"@\d+", "", regex=True)
    if backend:
        d = d[d["backend"] == backend]
    out = []
    for key, g in d.groupby(["workload", "workload_config", "checkpoint"], sort=True):
        g = g.sort_values("variance_total")
        unb, bia = g[g["unbiased"]], g[~g["unbiased"]]
        row: dict[str, Any] = dict(zip(["workload", "config", "checkpoint"], key))
        for tag, r in (("best", unb.iloc[0] if len(unb) else None), ("second", unb.iloc[1] if len(unb) > 1 else None)):
            if r is not None:
                row[tag] = f"{r['estimator']}[{r['backend']}]"
                row[f"{tag}_var"] = (
                    f"{r['variance_total']:.4g} [{r['variance_total_ci_low']:.4g}, {r['variance_total_ci_high']:.4g}]"
                )
        if len(unb) > 1:
            row["clear"] = bool(unb.iloc[0]["variance_total_ci_high"] < unb.iloc[1]["variance_total_ci_low"])
        if len(unb) and unb["efficiency"].notna().any():  # variance × time per call: cost-aware choice
            e = unb.loc[unb["efficiency"].idxmin()]
            row["most_efficient"] = f"{e['estimator']}[{e['backend']}] {e['efficiency']:.3g}"
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
        print(which_estimator(df, a.param, a.backend, meta.get("estimators") or ()).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
