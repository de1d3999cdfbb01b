"""suites/benchmarks/discrete_table.py: ratios to RLOO, the documented-cost check (a mismatch is printed), the
Gumbel-Rao noise floor and the training summary (mean ± SE over seeds), on hand-made result rows."""

from __future__ import annotations

import json
import math

import pandas as pd

from suites.benchmarks.discrete_table import bias_table, training_table, variance_table

CFG = json.dumps({"latent_dim": 10})


def _row(est: str, variance: float, f: float, g: float) -> dict:
    return dict(
        workload="vae_bernoulli",
        workload_config=CFG,
        checkpoint=0,
        n_samples=2,
        param="eta",
        estimator=est,
        n_coords=40,
        variance=variance,
        f_evals=f,
        grad_evals=g,
        variance_per_eval=variance * (f + g),
        variance_per_eval_ci_low=0.0,
        variance_per_eval_ci_high=1.0,
    )


def test_ratios_and_documented_counts() -> None:
    df = pd.DataFrame([_row("score_function_rloo", 0.5, 8, 0), _row("double_cv", 0.1, 8, 8), _row("arms", 0.4, 9, 0)])
    lines = variance_table(df, "eta").splitlines()
    rloo, arms, dcv = (next(x for x in lines if f"| {e} |" in x) for e in ("score_function_rloo", "arms", "double_cv"))
    assert rloo.endswith("| 1 |") and "| 8+0 |" in rloo
    assert "| 8+8 |" in dcv and dcv.endswith(f"| {0.1 * 16 / 4:.3g} |")  # 4 examples × (L f + L ∂f), ratio 0.4
    assert "8+0 (MISMATCH)" in arms  # 9 measured f evaluations against ARMS's documented L per example


def test_bias_table_noise_floor() -> None:
    row = _row("gumbel_rao", 0.04, 0, 8) | dict(
        h_temperature=0.5, bias=0.02, bias_ci_low=0.01, bias_ci_high=0.03, bias_p=1e-9, n_replicates=400
    )
    out = bias_table(pd.DataFrame([row]), "eta")
    assert f"| {math.sqrt(0.04 / 400):.3g} |" in out


def test_training_table_mean_and_se_over_seeds() -> None:
    rows = [
        dict(
            unit_key=str(s),
            workload="vae_bernoulli",
            estimator="rodeo",
            steps=300,
            test_bound=b,
            test_bound_k=50,
            test_elbo=b - 0.1,
        )
        for s, b in enumerate([-1.0, -2.0, -3.0])
    ]
    out = training_table(pd.DataFrame(rows))
    assert "| rodeo | 3 | 300 | -2.000 ± 0.577 (50) |" in out  # SE = sd / √3 = 1 / √3
