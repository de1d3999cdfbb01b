"""The calibration grid (suites/benchmarks/calibration.py): coverage, one-sided bounds and bias-test size of
harness.stats.metrics on replicate distributions with exact moments, whatever the tails.

Targets (issue 20, docs/notes/measurement.md "Coverage whatever the tails"), each asserted with a binomial or
Poisson tolerance at a fixed seed (``z = 3.29``, two-sided 0.001 per assertion):

* the interval a row reports — two-sided, or [lower bound, ∞) where the tail is flagged — covers the exact
  variance with probability >= 0.93 on every case, every set counted;
* flag rate on normal and exponential replicates <= 2%;
* the one-sided bound holds (P(bound <= truth) >= 0.95) and its median is >= 50% of the truth on Student-t(3) and
  symmetric Pareto(2.5);
* false "biased" verdicts <= 2× the per-row level.

Power: the same assertions fail on the rule before issue 20 (coverage 0.875 on Student-t(3), 0.830 on ±Pareto(2.5)
at R = 2000; raw bias-test rejections 5.8× nominal on |Student-t(2.1)| at 1e-3: asserted below, so the size
criterion can fail).  The fast subset runs in ``make test``; the whole grid is ``slow`` (``make test-all``).
"""

from __future__ import annotations

import math

import pytest

from suites.benchmarks import calibration as cal

Z = 3.29
COVERAGE = 0.93
FLAG_LIGHT = 0.02


def coverage_floor(S: int, target: float = COVERAGE) -> float:
    return target - Z * math.sqrt(target * (1 - target) / S)


def rate_ceiling(S: int, rate: float) -> float:
    return rate + Z * math.sqrt(rate * (1 - rate) / S)


def count_ceiling(expected: float) -> float:
    """Largest count consistent with a Poisson mean of ``expected`` (normal approximation, z = 3.29)."""
    return expected + Z * math.sqrt(expected) + 1


def check_coverage(r: cal.Coverage) -> None:
    msg = f"{r.case} R={r.R}: {r}"
    assert r.coverage >= coverage_floor(r.S), msg
    if r.case in ("normal", "exponential"):
        assert r.flagged <= rate_ceiling(r.S, FLAG_LIGHT), msg
    if r.flagged * r.S >= 30:
        assert r.bound_valid >= coverage_floor(int(r.flagged * r.S), 0.95), msg


def check_size(r: cal.Size, level: float) -> None:
    expected = 2 * r.S * level  # twice the nominal rate is the target
    assert r.biased[level] <= count_ceiling(expected), f"{r.case} R={r.R} level {level}: {r}"


# -- fast subset (make test) -------------------------------------------------------------------------------
FAST = ["student-t(3)", "|student-t(3.5)|", "±pareto(2.5)", "pareto(5)", "normal", "exponential"]


@pytest.mark.parametrize("name", FAST)
def test_reported_interval_covers_fast(name: str) -> None:
    S = 600 if name not in ("normal", "exponential") else 1500
    r = cal.coverage(cal.CASES[name], 2000, S)
    check_coverage(r)
    if name in ("student-t(3)", "±pareto(2.5)"):  # a bound worth reading
        assert r.bound_median >= 0.5, r


def test_bias_verdicts_hold_their_level_fast() -> None:
    """|Student-t(2.1)|: the raw test rejects 5.8× too often at 1e-3 (heavy upper tail: a sample that has not seen
    it has a low mean and a small SE); the verdicts stay within 2× nominal."""
    level, S = 1e-3, 20000
    r = cal.bias_size(cal.CASES["|student-t(2.1)|"], 2000, S, levels=(level,))
    check_size(r, level)
    assert r.raw[level] > count_ceiling(2 * S * level), f"the case lost its power: {r}"


def test_student_t_df_variance_by_two_quadratures() -> None:
    """The ∂df cell's exact variance (state D!): D = 1: 1.35991, D = 2: 1.40945 — scipy adaptive quadrature against an
    independent 30-digit mpmath tanh-sinh quadrature with the score written out here."""
    import mpmath as mp

    nu, mu, L = 6.0, 0.5, 4
    with mp.workdps(30):
        c = mp.gamma((nu + 1) / 2) / (mp.sqrt(nu * mp.pi) * mp.gamma(nu / 2))

        def s(z: object) -> object:
            x2 = (z - mu) ** 2
            return (
                mp.digamma((nu + 1) / 2)
                - mp.digamma(nu / 2)
                - 1 / nu
                - mp.log1p(x2 / nu)
                + (nu + 1) * x2 / (nu * (nu + x2))
            ) / 2

        cuts = [-mp.inf, -100, -10, 0, mu, 10, 100, mp.inf]
        E = lambda g: mp.quad(lambda z: g(z) * c * (1 + (z - mu) ** 2 / nu) ** (-(nu + 1) / 2), cuts)  # noqa: E731
        m = {
            k: E(g)
            for k, g in {
                "z2": lambda z: z**2,
                "z4": lambda z: z**4,
                "s2": lambda z: s(z) ** 2,
                "z2s": lambda z: z**2 * s(z),
                "z2s2": lambda z: z**2 * s(z) ** 2,
                "z4s2": lambda z: z**4 * s(z) ** 2,
            }.items()
        }
        for D, stated in ((1, 1.35991), (2, 1.40945)):
            eh2 = m["z4s2"] + 2 * (D - 1) * m["z2"] * m["z2s2"] + (D - 1) * m["z4"] * m["s2"]
            exact = float((eh2 - m["z2s"] ** 2) / L)
            assert exact == pytest.approx(stated, abs=5e-6), D
            assert cal.student_t_df_variance(D) == pytest.approx(exact, rel=1e-9), D


# -- the whole grid (make test-all) --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("R", cal.R_VALUES)
def test_reported_interval_covers_the_grid(R: int) -> None:
    failures = []
    for case in cal.GRID:
        r = cal.coverage(case, R, 2000 if R == 2000 else 1000)
        try:
            check_coverage(r)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_bound_is_worth_reading() -> None:
    for R in cal.R_VALUES:
        for name in ("student-t(3)", "±pareto(2.5)"):
            r = cal.coverage(cal.CASES[name], R, 1000, salt=5)
            assert r.bound_median >= 0.5 and r.bound_valid >= coverage_floor(int(r.flagged * r.S), 0.95), r


@pytest.mark.slow
def test_bias_verdicts_hold_their_level_on_the_grid() -> None:
    level, S = 1e-3, 20000
    failures = []
    for case in cal.GRID:
        r = cal.bias_size(case, 2000, S, levels=(level,))
        try:
            check_size(r, level)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_bias_verdicts_hold_their_level_on_the_student_t_df_cell() -> None:
    """The shipped cell (score function, L = 4, student_t(6, 0.5, 1), D = 2): raw rejections ≈ 26× nominal at 1e-3."""
    level, S = 1e-3, 10000
    r = cal.bias_size(cal.df_cell(), 2000, S, levels=(level,))
    check_size(r, level)
    assert r.raw[level] > count_ceiling(2 * S * level), f"the case lost its power: {r}"
