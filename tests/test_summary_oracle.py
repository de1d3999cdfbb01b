"""Oracle baselines are never recommended by ``harness.report.which_estimator`` (best, runner-up, any ranking):
the flag comes from the declaration as the run recorded it (the ``oracle`` column, or for runs made before it
existed the run's catalog in meta.json), never from the estimator's name."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.report.which_estimator import which_estimator

ORACLE = "lowvar"  # an ordinary name: only the declaration says it is an oracle


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
        (ORACLE, 1.0, True),
        ("score_function_rloo", 2.0, False),
        ("score_function_oracle", 3.0, False),  # the suffix is just a name: declared ordinary, it competes
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


CATALOG = [
    {"name": ORACLE, "backend": "numpy", "oracle": True},
    {"name": "score_function_rloo", "backend": "numpy", "oracle": False},
    {"name": "score_function_oracle", "backend": "numpy", "oracle": False},
]


@pytest.mark.parametrize("with_column", [True, False])
def test_declared_oracle_is_never_named(with_column: bool) -> None:
    (row,) = which_estimator(_rows(with_column), catalog=CATALOG).to_dict("records")
    assert row["best"] == "score_function_rloo[numpy]"
    assert row["second"] == "score_function_oracle[numpy]"
    assert row["at_equal_time"] == row["at_equal_L"] == "score_function_rloo[numpy]"
    assert row["at_equal_evals"] == "unavailable"  # no variance_per_eval column: a run made before issue 19
    assert ORACLE not in " ".join(str(v) for v in row.values())


def test_undeclared_estimator_is_named_whatever_its_name() -> None:
    """Power: without the declaration (no column, no catalog entry) the lowest-variance estimator is named best."""
    (row,) = which_estimator(_rows(with_column=False)).to_dict("records")
    assert row["best"] == f"{ORACLE}[numpy]"
