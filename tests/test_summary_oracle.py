"""Oracle baselines are never recommended by ``harness.workloads.summary.which_estimator`` (best, runner-up,
most efficient), with the ``oracle`` column and, for runs made before it existed, from the registry."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.workloads.summary import which_estimator


def _rows(with_column: bool) -> pd.DataFrame:
    base = dict(
        param="encoder",
        workload="vae_bernoulli",
        workload_config="{}",
        checkpoint=0,
        backend="numpy",
        unbiased=True,
        exact_method="enumeration",
        bias_z_truth=0.0,
    )
    rows = []
    for name, var, oracle in (
        ("score_function_oracle", 1.0, True),
        ("score_function_rloo", 2.0, False),
        ("score_function", 3.0, False),
    ):
        r = dict(
            base,
            estimator=name,
            variance_total=var,
            variance_total_ci_low=0.9 * var,
            variance_total_ci_high=1.1 * var,
            efficiency=var * 1e-3,
        )
        if with_column:
            r["oracle"] = oracle
        rows.append(r)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("with_column", [True, False])
def test_oracle_is_never_named(with_column: bool) -> None:
    (row,) = which_estimator(_rows(with_column)).to_dict("records")
    assert row["best"] == "score_function_rloo[numpy]"
    assert row["second"] == "score_function[numpy]"
    assert row["most_efficient"].startswith("score_function_rloo[numpy]")
    assert "oracle" not in " ".join(str(v) for v in row.values())
