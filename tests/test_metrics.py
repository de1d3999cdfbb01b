"""Unit tests of harness.stats.metrics: definitions, interval properties, edge cases (coverage: test_coverage.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats.metrics import (
    METRIC_KEYS,
    Z95,
    _hall_inverse,
    batch_summary,
    bias_tests,
    bonferroni_z,
    mean_interval,
    summarize,
    worst_rel_halfwidth,
)


def test_definitions_match_the_column_contract() -> None:
    seed = 1
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((4000, 3)) * [1.0, 2.0, 3.0] + [0.1, 0.0, -0.2]
    e = np.array([0.0, 0.0, 0.0])
    m = summarize(G, e)
    assert m["variance"] == pytest.approx(G.var(0, ddof=1).mean(), rel=1e-12)
    assert m["mse"] == pytest.approx(((G - e) ** 2).mean(), rel=1e-12)
    assert m["bias"] == pytest.approx(np.sqrt(((G.mean(0) - e) ** 2).mean()), rel=1e-12)
    assert m["grad_mean"] == pytest.approx(G.mean(), rel=1e-12)
    assert m["snr"] == pytest.approx(math.sqrt((G.mean(0) ** 2).mean() / m["variance"]), rel=1e-12)
    for k in ("variance", "mse", "bias"):
        assert m[f"{k}_ci_low"] <= m[k] <= m[f"{k}_ci_high"], f"{k} outside its own interval (seed={seed})"
    half = (m["variance_ci_high"] - m["variance_ci_low"]) / 2
    assert m["variance_rel_halfwidth"] == pytest.approx(half / m["variance"])
    assert set(METRIC_KEYS) <= set(m)


def test_hall_reduces_to_normal_interval_without_skewness() -> None:
    x = np.array([-1.0, 1.0] * 500)  # symmetric: skewness exactly 0
    mean, se, lo, hi = mean_interval(x)
    assert se == pytest.approx(x.std(ddof=1) / math.sqrt(1000))
    assert lo == pytest.approx(mean - Z95 * se) and hi == pytest.approx(mean + Z95 * se)


def test_hall_inverse_inverts_the_transform_and_is_monotone() -> None:
    t = np.linspace(-4, 4, 81)
    for A in (-0.3, -1e-10, 0.0, 0.05, 0.5, 2.0):
        u = _hall_inverse(t, np.full_like(t, A))
        g = u + A * u**2 / 3 + A**2 * u**3 / 27 + A / 6
        np.testing.assert_allclose(g, t, atol=1e-9, err_msg=f"A={A}")
        assert np.all(np.diff(u) > 0), f"not monotone for A={A}"


def test_right_skew_extends_the_upper_limit() -> None:
    seed = 2
    x = np.random.default_rng(seed).exponential(size=(3, 2000))
    mean, se, lo, hi = mean_interval(x)
    assert np.all(hi - mean > mean - lo), f"skewed data gave a symmetric interval (seed={seed})"
    m0, _, lo0, _ = mean_interval(x.T, axis=0)
    np.testing.assert_allclose([m0, lo0], [mean, lo])


def test_batch_axes_equal_separate_calls_and_blocks_equal_one_block() -> None:
    seed = 3
    G = np.random.default_rng(seed).standard_gamma(0.5, size=(5, 300, 7))
    e = np.full(7, 0.5)
    whole = batch_summary(G, e)
    blocked = batch_summary(G, e, block_elems=300 * 5 * 2)  # 2 coordinates per block
    wide = np.random.default_rng(seed).standard_normal((200, 100))  # >= 64 coordinates: R-axis layout
    np.testing.assert_allclose(batch_summary(wide, np.zeros(100))["variance"], wide.var(0, ddof=1).mean())
    assert worst_rel_halfwidth({"w": wide}) == pytest.approx(summarize(wide, np.zeros(100))["variance_rel_halfwidth"])
    for i in range(5):
        one = batch_summary(G[i], e)
        for k in METRIC_KEYS:
            assert whole[k][i] == pytest.approx(float(one[k]), rel=1e-10, abs=1e-14, nan_ok=True), k
            assert blocked[k][i] == pytest.approx(float(one[k]), rel=1e-10, abs=1e-14, nan_ok=True), k


def test_bias_interval_is_bonferroni_simultaneous() -> None:
    assert bonferroni_z(1) == pytest.approx(Z95)
    assert bonferroni_z(10) == pytest.approx(2.807, abs=1e-3)
    G = np.random.default_rng(4).standard_normal((1000, 10))
    m = summarize(G, np.zeros(10))
    se = G.std(0, ddof=1) / math.sqrt(1000)
    far = np.abs(G.mean(0)) + bonferroni_z(10) * se  # skewness ~ 0: close to the normal box
    assert m["bias_ci_high"] == pytest.approx(float(np.sqrt((far**2).mean())), rel=0.05)


def test_zero_variance_estimator_is_exact() -> None:
    G = np.full((50, 2), 1.25)
    m = summarize(G, np.array([1.25, 1.25]))
    assert m["variance"] == 0 and m["variance_ci_high"] == 0 and m["variance_rel_halfwidth"] == 0
    assert m["bias_z"] == 0 and m["bias_ci_low"] == 0 and m["mse"] == 0
    assert worst_rel_halfwidth({"a": G}) == 0.0


def test_rounding_level_deviation_of_an_exact_estimator_is_not_a_bias() -> None:
    """The delta method on gamma × quadratic is exact in exact arithmetic; at D = 16 its float64 estimates cancel
    terms much larger than the result, and one coordinate's mean deviates by ~1.2e3 eps of the truth, systematically
    (its batch-means SE is ~1e-16).  With the SE floored at 64 eps this was a "biased" verdict (bias_p 4e-9); at the
    one rounding level (``rounding_level``: the same 1e3 eps that makes a variance "exact") it is not.  Power: the
    same rows with a deviation of 10 rounding levels are flagged, and a plain MC bias is unaffected by the floor."""
    import stochgrad as sg
    from harness.stats.metrics import ROUNDING_ULPS, bias_verdict, rounding_level

    problem = sg.problem("gamma", objective="quadratic", dim=16, concentration=2, rate=1.5)
    rows = sg.measure("score_function_delta", problem, L=1, R=20000, seed=0, timing=False)
    assert (rows["bias_p_judged"] > 0.05).all(), rows[["param", "bias", "bias_p", "bias_p_judged"]]
    # power: an exact estimator off by 10 rounding levels in one coordinate is a bias
    e = np.array([2.2222222222222223, -3.5555555555555554])
    G = np.tile(e, (2000, 1)) + np.random.default_rng(0).standard_normal((2000, 2)) * 1e-16
    off = G.copy()
    off[:, 0] += 10 * rounding_level(2.2e-16, e[0], e[0])
    p = bias_tests(off, e)
    assert bias_verdict(p["bias_p"], p["bias_p_judged"], 0.05) == "biased", p
    assert bias_verdict(*(bias_tests(G, e)[k] for k in ("bias_p", "bias_p_judged")), 0.05) == "no bias detected"
    mc = np.tile(e + 0.05, (20000, 1)) + np.random.default_rng(1).standard_normal((20000, 2))  # a Monte Carlo bias
    p = bias_tests(mc, e)
    assert bias_verdict(p["bias_p"], p["bias_p_judged"], 0.05) == "biased", p
    assert ROUNDING_ULPS == 1e3  # the report's exact_est and the race's exact arms use the same constant


def test_non_finite_replicates_are_dropped_and_counted() -> None:
    G = np.random.default_rng(5).standard_normal((100, 2))
    G[3, 1] = np.nan
    G[7, 0] = np.inf
    m = summarize(G, np.zeros(2))
    assert m["n_replicates_used"] == 98
    assert m["nan_fraction"] == pytest.approx(2 / 200)
    assert math.isfinite(m["variance"])
    assert math.isnan(summarize(np.full((3, 1), np.nan), np.zeros(1))["variance"])
    assert math.isnan(worst_rel_halfwidth({"a": np.full((3, 1), np.nan)}))


def test_worst_rel_halfwidth_is_the_max_over_parameters() -> None:
    rng = np.random.default_rng(6)
    G = {"a": rng.standard_gamma(0.5, (3000, 3)), "b": rng.standard_normal((3000, 5))}
    expect = max(summarize(g, np.zeros(g.shape[1]))["variance_rel_halfwidth"] for g in G.values())
    assert worst_rel_halfwidth(G) == pytest.approx(expect, rel=1e-9)


def test_halfwidth_shrinks_like_one_over_sqrt_r() -> None:
    seed = 7
    rng = np.random.default_rng(seed)
    r1 = summarize(rng.standard_normal((2000, 2)), np.zeros(2))["variance_rel_halfwidth"]
    r2 = summarize(rng.standard_normal((32000, 2)), np.zeros(2))["variance_rel_halfwidth"]
    assert r1 / r2 == pytest.approx(4.0, rel=0.15), f"seed={seed}"
    # Gaussian data: relative half-width z * sqrt(2 / (C R)) for the coordinate-averaged variance
    assert r2 == pytest.approx(Z95 * math.sqrt(2 / (2 * 32000)), rel=0.1)


def test_single_coordinate_fast_path_equals_the_general_path() -> None:
    rng = np.random.default_rng(8)
    for g in (rng.standard_normal((5000, 1)) + 0.3, rng.standard_gamma(0.3, (3000, 1)), np.full((10, 1), 2.0)):
        fast, general = summarize(g, np.array([0.25])), batch_summary(g, np.array([0.25]))
        for k in METRIC_KEYS:
            assert fast[k] == pytest.approx(float(general[k]), rel=1e-9, abs=1e-300, nan_ok=True), k


# -- tail diagnostics (harness.stats.tails) --------------------------------------------------------------------
def test_top_k_prefilter_equals_a_full_sort() -> None:
    from harness.stats.tails import top_k

    seed = 9
    x = np.random.default_rng(seed).standard_normal(100_000) ** 2
    for k in (10, 317):
        top, thr = top_k(x, k)
        s = np.sort(x)[::-1]
        np.testing.assert_array_equal(np.sort(top)[::-1], s[:k], err_msg=f"seed={seed}")
        assert thr == s[k]
    top2, thr2 = top_k(np.stack([x[:5000], x[5000:10000]]), 70)  # batched path
    np.testing.assert_array_equal(thr2, [np.sort(x[:5000])[-71], np.sort(x[5000:10000])[-71]])


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_hill_bound_covers_the_tail_index_of_pareto_data(alpha: float) -> None:
    """Symmetric Pareto estimates: the Hill estimate is near α and its 99% upper bound covers α in >= 0.99 - tol
    of sets (exact for a Pareto tail).  Power at R = 2000: α = 2 flagged in >= 90% of sets (measured 0.96;
    α = 2.5: 0.77, α = 3: 0.35, α = 3.5: 0.08 — docs/notes/measurement.md)."""
    from harness.stats.tails import tail_diagnostics

    seed, S, R = 10, 1000, 2000
    rng = np.random.default_rng(seed)
    G = rng.choice([-1.0, 1.0], size=(S, R)) * (rng.pareto(alpha, size=(S, R)) + 1.0)  # P(|G| > x) = x^-α
    d = tail_diagnostics((G - G.mean(1, keepdims=True)) ** 2)
    tol = 3.29 * math.sqrt(0.99 * 0.01 / S)
    cov = float(np.mean(d["tail_index_ucb"] >= alpha))
    assert cov >= 0.99 - tol, f"bound covered α = {alpha} in {cov:.3f} of sets (seed={seed})"
    assert float(np.median(d["tail_index"])) == pytest.approx(alpha, rel=0.1), f"seed={seed}"
    if alpha == 2.0:
        assert float(np.mean(d["heavy"] > 0)) >= 0.9, f"seed={seed}"


def test_light_discrete_and_small_samples_are_not_flagged() -> None:
    from harness.stats.tails import TAIL_MIN_R, tail_diagnostics

    seed = 11
    rng = np.random.default_rng(seed)
    gauss = rng.standard_normal((500, 2000))
    d = tail_diagnostics((gauss - gauss.mean(1, keepdims=True)) ** 2)
    assert float(np.mean(d["heavy"] > 0)) <= 0.01, f"Gaussian flagged (seed={seed})"
    atoms = rng.choice([0.0, 1.0, 50.0], p=[0.9, 0.095, 0.005], size=(200, 2000))  # rare large atom, ties
    d = tail_diagnostics((atoms - atoms.mean(1, keepdims=True)) ** 2)
    assert np.all(np.isinf(d["tail_index"])) and not np.any(d["heavy"]), f"discrete flagged (seed={seed})"
    d = tail_diagnostics(np.zeros(1000))  # an exact estimator
    assert np.isinf(d["tail_index"]) and d["heavy"] == 0
    d = tail_diagnostics(rng.pareto(1.0, TAIL_MIN_R - 1))
    assert np.isnan(d["tail_index"]) and d["heavy"] == 0


def test_heavy_rows_report_a_lower_bound_and_the_precision_statistic_is_nan() -> None:
    seed = 12
    G = np.random.default_rng(seed).standard_t(2.5, size=(4000, 2))  # tail index 2.5: fourth moment infinite
    m = summarize(G, np.zeros(2))
    assert m["heavy_tail"] in ("fourth_moment", "variance") and m["variance_ci_valid"] is False, f"seed={seed}"
    assert (
        math.isnan(m["variance_ci_high"]) and math.isnan(m["mse_ci_high"]) and math.isnan(m["variance_rel_halfwidth"])
    )
    assert 0 <= m["variance_ci_low"] <= m["variance"] and 0 <= m["mse_ci_low"] <= m["mse"]
    assert math.isnan(worst_rel_halfwidth({"x": G}))
    assert m["bias_ci_low"] <= m["bias"] <= m["bias_ci_high"]  # bias intervals are kept
