"""Bias verdicts (harness.stats.metrics): biased / cannot judge / no bias detected, the family of a report's verdicts, and
how the report (data, heat map, leaderboard) and ``stochgrad check`` (harness.measure.check) show them.

Sizes of the verdicts on the calibration grid and the Student-t ∂df cell: tests/test_calibration.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.stats.metrics import (
    VERDICT_BIASED,
    VERDICT_CLEAN,
    VERDICT_UNJUDGED,
    bias_test,
    bias_tests,
    bias_verdict,
    family_levels,
    judged_directions,
)


def test_verdict_states() -> None:
    p = np.array([0.2, 1e-6, 1e-6, np.nan])
    pj = np.array([0.2, 1e-6, 0.5, np.nan])
    v = bias_verdict(p, pj, 1e-4)
    assert list(v) == [VERDICT_CLEAN, VERDICT_BIASED, VERDICT_UNJUDGED, VERDICT_CLEAN]
    assert bias_verdict(1e-6, 1e-9, 1e-4) == VERDICT_BIASED  # p_judged is never below p: read as p


def test_family_is_the_distinct_cells_judged() -> None:
    """Two platforms of cell a are one test (Bonferroni over its 2 platforms), b on one platform, c declared biased."""
    cells = np.array(["a", "a", "b", "c"], dtype=object)
    judged = np.array([True, True, True, False])
    lv = family_levels(cells, judged, alpha=0.05)
    assert lv[0] == lv[1] == pytest.approx(0.05 / (2 * 2)) and lv[2] == pytest.approx(0.05 / 2)
    assert np.isnan(lv[3])
    assert np.all(np.isnan(family_levels(cells, np.zeros(4, bool))))


def test_vectorized_bias_tests_equal_single_sets() -> None:
    seed = 21
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((6, 600, 3)) + np.array([0.0, 0.0, 0.4])
    G[2, :, 2] = rng.pareto(2.2, 600)  # heavy upper tail, mean above the truth 0: an upward rejection
    e = np.zeros(3)
    many = bias_tests(G, e)
    for i in range(6):
        one = bias_test(G[i], e)
        for k, val in one.items():
            assert many[k][i] == pytest.approx(val, rel=1e-12, abs=1e-300), (k, i, seed)
    assert np.all(many["bias_p_judged"] >= many["bias_p"])


def test_rejections_are_judged_only_where_the_opposite_tail_is_light() -> None:
    """Pareto(2.2) replicates (heavy upper tail, bounded below): a mean *above* the truth is judged (a missed upper
    tail cannot explain it), a mean *below* it is not (a sample that has not seen the upper tail looks like that)."""
    seed = 22
    y = np.random.default_rng(seed).pareto(2.2, (4, 4000)) + 1.0
    assert np.all(judged_directions(y, np.ones(4)))
    assert not np.any(judged_directions(y, -np.ones(4)))
    assert np.all(judged_directions(np.random.default_rng(seed).standard_normal((4, 4000)), np.array([1, -1, 1, -1])))
    mean = 2.2 / 1.2
    up = bias_test(y[0][:, None] - 0.5, np.array([mean]))  # mean 0.5 below the truth: cannot judge
    assert up["bias_p"] < 1e-6 and up["bias_p_judged"] == 1.0, (up, seed)
    down = bias_test(y[0][:, None] + 0.5, np.array([mean]))  # 0.5 above: biased
    assert down["bias_p_judged"] == down["bias_p"] < 1e-6, (down, seed)


def _rows(**over: object) -> pd.DataFrame:
    base = dict(
        estimator="e",
        backend="numpy",
        device="cpu",
        distribution="normal",
        objective="quadratic",
        dim=1,
        n_samples=4,
        param="loc",
        problem="normal(loc=0)/quadratic/D=1",
        unbiased=True,
        variance=1.0,
        variance_se=0.01,
        variance_ci_low=0.98,
        variance_ci_high=1.02,
        variance_rel_halfwidth=0.02,
        bias_z=0.0,
        bias=0.0,
        bias_ci_low=0.0,
        bias_ci_high=0.1,
        exact_grad=1.0,
        grad_mean=1.0,
        bias_p=0.5,
        bias_p_judged=0.5,
        heavy_tail="",
        variance_ci_valid=True,
        nan_fraction=0.0,
        efficiency=np.nan,
        n_replicates=2000,
    )
    base.update(over)
    return pd.DataFrame([base])


def test_report_rows_get_the_three_verdicts_and_the_marks() -> None:
    from harness.report import summary as S
    from harness.report.data import bias_family, normalize, pool_platforms
    from harness.report.tables import _variance_cell

    df = pd.concat(
        [
            _rows(estimator="clean"),
            _rows(estimator="biased", bias_p=1e-9, bias_p_judged=1e-9),
            _rows(estimator="heavy", bias_p=1e-9, bias_p_judged=1.0),
            _rows(estimator="heavy", backend="torch", bias_p=0.3, bias_p_judged=0.3),
            _rows(estimator="relax", unbiased=False, bias_p=1e-9, bias_p_judged=1e-9),
        ],
        ignore_index=True,
    )
    d = normalize(df)
    verdict = dict(zip(d["estimator"] + ":" + d["backend"], d["bias_verdict"]))
    assert verdict == {
        "clean:numpy": VERDICT_CLEAN,
        "biased:numpy": VERDICT_BIASED,
        "heavy:numpy": VERDICT_UNJUDGED,
        "heavy:torch": VERDICT_CLEAN,
        "relax:numpy": "",
    }
    assert bias_family(d) == 3  # clean, biased, heavy (two platforms: one cell); relax is declared biased
    pooled = pool_platforms(d)
    heavy = pooled[pooled["estimator"] == "heavy"].iloc[0]
    assert heavy["bias_unjudged"] and not heavy["bias_detected"]
    cells = S.heat(S.ratios(pooled, "variance", S.KEYS), "t", "n", S._order(d), sorted(d["group"].unique())).cells
    assert cells[("heavy", "normal × quadratic")]["unjudged"] and cells[("biased", "normal × quadratic")]["biased"]
    hm = S.heat(S.ratios(pooled, "variance", S.KEYS), "t", "n", ["heavy"], ["normal × quadratic"])
    assert "b?" in S._cell_html(hm, "heavy", "normal × quadratic")
    assert ">b?</span>" in _variance_cell({**heavy.to_dict(), "n_platforms": 2}, False)
    ok = S._eligible(pooled, "variance")
    assert set(pooled.loc[ok, "estimator"]) == {"clean"}


def test_check_says_cannot_judge_where_the_tails_forbid_it() -> None:
    """An estimator with a heavy upper tail (Pareto(2.2) noise) and a mean 0.3 below the truth: "cannot judge";
    0.3 above it: "biased".  ``stochgrad check`` then exits 4 (CANNOT JUDGE) rather than 1 or 0."""
    from harness import registry
    from harness.measure.check import check_problem, overall_verdict
    from harness.problems import ProblemSpec
    from harness.registry import get_estimator, register_estimator

    problem = ProblemSpec("normal", "quadratic", 1, {"loc": 0.5, "scale": 1.5}, {}).build()
    results = {}
    for name, shift in (("heavy_below_test", -0.3), ("heavy_above_test", 0.3)):

        def fn(ctx: object, shift: float = shift) -> dict:
            out = {}
            for k, g in ctx.problem.exact.grads.items():  # type: ignore[attr-defined]
                u = np.asarray(ctx.noise.uniform((ctx.R, *np.shape(g))))  # type: ignore[attr-defined]
                out[k] = g + shift + (u ** (-1 / 2.2) - 2.2 / 1.2)
            return out

        register_estimator(name, distributions=("normal",), unbiased=True, reference="test").implementation("numpy")(fn)
        try:
            results[name] = check_problem(get_estimator(name, "numpy"), problem, R=20000, max_R=None, seed=23)
        finally:
            registry.unregister(name)
    assert results["heavy_below_test"].verdict == "cannot judge", results["heavy_below_test"].line()
    assert results["heavy_above_test"].verdict == "biased", results["heavy_above_test"].line()
    assert overall_verdict([results["heavy_below_test"]], unbiased=True) == "CANNOT JUDGE"
    assert overall_verdict([results["heavy_below_test"], results["heavy_above_test"]], unbiased=True) == "FAIL"
