"""The public API (``import stochgrad as sg``): problem, measure, run, load_run, compare, plugin declarations,
validation of estimator output, and ``stochgrad check`` verdicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import stochgrad as sg
from harness import registry
from harness.cli.main import main
from harness.problems import ProblemError

SMOKE = {
    "suite": {"name": "api-smoke", "seed": 3, "replicates": 400, "timing": False},
    "sweep": [
        {
            "estimators": ["pathwise", "score_function"],
            "backends": ["numpy"],
            "n_samples": [2],
            "problems": [{"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}, "objective": "quadratic"}],
        }
    ],
}


def test_measure_gaussian_quadratic_exact_variance() -> None:
    """Var[∂loc] of the single-sample pathwise gradient of E(z − k)² under N(μ, σ²) is 4σ² = 9 exactly."""
    seed = 0
    df = sg.measure("pathwise", sg.problem("normal", loc=0.5, scale=1.5), L=1, R=100_000, seed=seed, timing=False)
    row = df.set_index("param").loc["loc"]
    z = 3.29  # two-sided 0.001
    assert abs(row["variance"] - 9.0) <= z * row["variance_se"], f"seed={seed}: {row['variance']}"
    assert z * row["variance_se"] < 0.2  # power: a 2% error in the variance would be detected
    assert row["variance_ci_low"] < 9.0 < row["variance_ci_high"]
    assert row["exact_grad"] == pytest.approx(1.0) and row["bias_p"] > 1e-3
    assert set(df["param"]) == {"loc", "scale"} and (df["estimator"] == "pathwise").all()


def test_measure_reinforce_matches_the_closed_form() -> None:
    """REINFORCE on N(μ, 1), f = (x − k)²: single-sample Var[∂μ] = a⁴ + 14a² + 15, a = μ − k."""
    seed, a = 4, 1.0
    p = sg.problem("normal", loc=a, scale=1.0, objective="quadratic", objective_params={"k": 0.0})
    row = sg.measure("score_function", p, L=1, R=200_000, seed=seed, timing=False).set_index("param").loc["loc"]
    exact = a**4 + 14 * a**2 + 15
    assert abs(row["variance"] - exact) <= 3.29 * row["variance_se"], f"seed={seed}"
    assert 3.29 * row["variance_se"] < 0.1 * exact


def test_problem_errors_name_the_key() -> None:
    with pytest.raises(ProblemError, match="unknown distribution 'Normal'; valid"):
        sg.problem("Normal", loc=0.0)
    with pytest.raises(ProblemError, match="params.scale"):
        sg.problem("normal", scale=-1.0)
    assert "normal" in sg.list_distributions() and "quadratic" in sg.list_objectives()


def test_measure_rejects_bad_hyper_and_unknown_estimator() -> None:
    p = sg.problem("bernoulli", probs=0.3, objective="bernoulli_toy")
    with pytest.raises(ValueError, match="hyper.temperature"):
        sg.measure("gumbel_softmax", p, hyper={"temperature": -1.0})
    with pytest.raises(sg.RegistryError, match="unknown estimator"):
        sg.measure("no_such", p)


def test_run_dict_suite_report_load_and_compare(tmp_path: Path) -> None:
    run = sg.run(SMOKE, out=tmp_path / "a")
    assert run.meta["status"] == "complete" and len(run.results) == 4
    assert {e["name"] for e in run.meta["estimators"]} >= {"pathwise", "score_function"}
    html = run.report(tmp_path / "r.html")
    assert html.exists() and html.stat().st_size > 1000
    other = sg.run(SMOKE, out=tmp_path / "b", seed=4)
    again = sg.load_run(tmp_path / "a")
    assert again.results.equals(run.results)
    cmp = sg.compare(run, other)
    assert len(cmp) == 4 and {"var_a", "var_b", "var_ratio"} <= set(cmp.columns)
    assert np.allclose(cmp["var_ratio"], cmp["var_b"] / cmp["var_a"])


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (lambda ctx: {"loc": 0.0, "scale": 0.0}, r"shape \[\]"),
        (
            lambda ctx: {"loc": np.zeros((1, ctx.dim)), "scale": np.zeros((1, ctx.dim))},
            r"shape \[1, 1\].*expected \[50, 1\]",
        ),
        (
            lambda ctx: {"loc": np.zeros((ctx.R, ctx.dim), complex), "scale": np.zeros((ctx.R, ctx.dim))},
            "complex128 is not a real",
        ),
        (
            lambda ctx: {"loc": np.zeros((ctx.R, ctx.dim), int), "scale": np.zeros((ctx.R, ctx.dim))},
            "int64 is not a real",
        ),
        (lambda ctx: {"loc": np.full((ctx.R, ctx.dim), "x"), "scale": np.zeros((ctx.R, ctx.dim))}, "<U1 is not a real"),
        (
            lambda ctx: {"loc": np.full((ctx.R, ctx.dim), np.nan), "scale": np.zeros((ctx.R, ctx.dim))},
            "every replicate of .*loc.* non-finite",
        ),
        (lambda ctx: {"loc": np.zeros((ctx.R, ctx.dim))}, r"no gradient for \['scale'\]"),
        (lambda ctx: [1, 2], "returned list"),
    ],
)
def test_malformed_estimator_output_fails_the_cell(output, match: str) -> None:
    est = sg.register_estimator("malformed_test", distributions=["normal"], unbiased=True)
    est.implementation("numpy")(output)
    try:
        with pytest.raises(sg.MeasureError, match=match) as info:
            sg.measure("malformed_test", sg.problem("normal"), L=2, R=50, timing=False)
        assert "malformed_test" in str(info.value)
    finally:
        registry.unregister("malformed_test")


def test_check_correct_estimator_is_not_failed_at_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["check", "score_function_rloo", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert rc == 0 and "verdict: PASS" in out, out


def test_check_estimator_that_applies_to_no_problem_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shipped problems exist for every distribution today, so the shipped set is narrowed to normal ones."""
    import harness.measure.check as validate

    normal_only = [p for p in validate.example_problems() if p.distribution == "normal"]
    monkeypatch.setattr(validate, "example_problems", lambda: normal_only)
    est = sg.register_estimator("nomatch_test", distributions=["gamma"], unbiased=True)
    est.implementation("numpy")(lambda ctx: {})
    try:
        rc = main(["check", "nomatch_test"])
        err = capsys.readouterr().err
        assert rc == 2 and "applies to no shipped problem" in err and "valid distribution names" in err, err
        assert "'gamma'" in err and "normal" in err
    finally:
        registry.unregister("nomatch_test")


def test_check_misspelled_distribution_is_refused_at_registration() -> None:
    with pytest.raises(sg.RegistryError, match="unknown distribution 'Normal'; valid: .*'normal'"):
        sg.register_estimator("misspelled_test", distributions=["Normal"], unbiased=True)
    assert "misspelled_test" not in sg.list_estimators()


def test_version_and_all() -> None:
    assert sg.__version__ and all(hasattr(sg, n) for n in sg.__all__)
    assert math.isfinite(float(sg.get_estimator("pathwise").min_samples))
