"""arms (antithetic-REINFORCE-multi-sample, Dirichlet and Gaussian copulas): what the registry battery cannot check.

- per-sample formula on fixed noise against a hand computation (copula samples by hand, the debiasing factor
  from scipy: the Dirichlet copula's closed-form pair CDF, scipy's bivariate normal CDF), K = 2, 3, 5, 3 backends;
- Owen's T quadrature against ``scipy.special.owens_t``;
- the copulas' samples: marginal P(b = 1) = p and pair probability P(b_j = b_k = 1) as the debiasing factor assumes
  (z-tests, Bonferroni);
- K = 2 is DisARM: the same per-sample value ½(f(b₁) − f(b₂))(b₁ − b₂)σ(|θ|) on the drawn pairs;
- unbiasedness of both copulas at K = 2, 3, 5 on a problem with p on both sides of ½ and extreme logits
  (Bonferroni t-test with a power check); variance below RLOO's at equal K (z > 3).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

import stochgrad as sg
from estimators.arms import COPULAS, owens_t
from tests.support.estimator_calls import BACKENDS, check, context, estimates, get_estimator, run_fixed, uniform

LOGITS = [-3.0, -0.4, 0.4, 2.5]
PROB = sg.problem("bernoulli", objective="quadratic", dim=4, logits=LOGITS, objective_params={"k": 0.3})
Z = 4.5  # |z| bound for the copula probability checks (Bonferroni over ~60 tests at ≈4e-4 family-wise)
Z_VAR = 3.0


def test_declared_capabilities() -> None:
    for b in BACKENDS:
        spec = get_estimator("arms", b)
        assert spec.unbiased and spec.min_samples == 2 and spec.distributions == ("bernoulli",)
        assert spec.hyperparameters["copula"].choices == COPULAS and spec.reference and spec.doc


def _pairs_by_hand(copula: str, L: int, R: int, seed: int, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(b [R, L, D], p − P(b_j = b_k = 1) [D]) from the seed's stream, written from the copulas' definitions."""
    rng = np.random.default_rng(seed)
    D = p.size
    if copula == "dirichlet":
        E = -np.log(uniform(rng, (R, L, D)))
        uc = (1 - E / E.sum(1, keepdims=True)) ** (L - 1)
        u = np.where(p < 0.5, uc, 1 - uc)  # reflected for p >= 1/2
        m = np.minimum(p, 1 - p)
        pair = np.maximum(2 * m ** (1 / (L - 1)) - 1, 0) ** (L - 1)  # C(m, m)
        return (u < p).astype(float), m - pair
    eps = rng.standard_normal((R, L, D))
    g = (eps - eps.mean(1, keepdims=True)) * math.sqrt(L / (L - 1))
    h = stats.norm.ppf(p)
    b = (g < h).astype(float)
    if L == 2:
        return b, np.minimum(p, 1 - p)
    rho = -1 / (L - 1)
    mvn = stats.multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]])
    return b, p - np.array([mvn.cdf([hh, hh]) for hh in h])


@pytest.mark.parametrize("copula", COPULAS)
@pytest.mark.parametrize("L", [2, 3, 5])
def test_per_sample_formula(copula: str, L: int) -> None:
    R, seed, k = 5, 40 + L, 0.3
    p = special.expit(np.array(LOGITS))
    b, denom = _pairs_by_hand(copula, L, R, seed, p)
    f = ((b - k) ** 2).sum(-1)  # [R, L]
    hand = ((f - f.mean(1, keepdims=True))[..., None] * (b - p)).sum(1) / (L - 1) * p * (1 - p) / denom
    for be in BACKENDS:
        out = run_fixed("arms", be, PROB, L, R, seed, {"copula": copula})["logits"]
        np.testing.assert_allclose(out, hand, rtol=1e-7, atol=1e-12, err_msg=f"arms {copula} L={L} {be} seed={seed}")


def test_owens_t_matches_scipy() -> None:
    ctx = context(PROB, "numpy", 2, 1, 0)
    h = np.array([-8.0, -3.0, -1.0, -0.1, 0.0, 0.5, 2.0, 6.0])
    for K in (3, 4, 5, 10, 100):
        a = math.sqrt(K / (K - 2))
        np.testing.assert_allclose(owens_t(ctx, h, a), special.owens_t(h, a), rtol=1e-12, atol=1e-300, err_msg=f"K={K}")


@pytest.mark.parametrize("copula", COPULAS)
@pytest.mark.parametrize("L", [2, 3, 5])
def test_copula_marginals_and_pairs(copula: str, L: int) -> None:
    """Marginal P(b_k = 1) = p and P(b_j = b_k = 1) = p − denominator, on the estimator's own draws."""
    R, seed = 100_000, 50 + L
    p = special.expit(np.array(LOGITS))
    b, denom = _pairs_by_hand(copula, L, R, seed, p)
    joint = p - denom
    marg = b.mean((0, 1))
    se_m = np.sqrt(p * (1 - p) / (R * L)) * math.sqrt(L)  # conservative: samples of a replicate are dependent
    pair = (b[:, 0] * b[:, 1]).mean(0)
    se_p = np.sqrt(np.maximum(joint * (1 - joint), 1e-12) / R)
    assert np.all(np.abs(marg - p) <= Z * se_m), f"{copula} L={L}: marginals {marg} vs {p} (seed={seed})"
    assert np.all(np.abs(pair - joint) <= Z * se_p + 1e-12), f"{copula} L={L}: pairs {pair} vs {joint} (seed={seed})"
    # the estimator consumes the same stream the same way (per-sample test), so these are its samples


@pytest.mark.parametrize("copula", COPULAS)
def test_two_samples_are_disarm(copula: str) -> None:
    R, seed, k = 200, 60, 0.3
    p = special.expit(np.array(LOGITS))
    b, _ = _pairs_by_hand(copula, 2, R, seed, p)
    f = ((b - k) ** 2).sum(-1)
    disarm = 0.5 * (f[:, 0] - f[:, 1])[:, None] * (b[:, 0] - b[:, 1]) * special.expit(np.abs(LOGITS))
    out = run_fixed("arms", "numpy", PROB, 2, R, seed, {"copula": copula})["logits"]
    np.testing.assert_allclose(out, disarm, rtol=1e-10, atol=1e-14, err_msg=f"seed={seed}")


CASES = [(c, L) for c in COPULAS for L in (2, 3, 5)]


@pytest.mark.parametrize(("copula", "L"), CASES)
def test_unbiased(copula: str, L: int) -> None:
    seed = 70 + CASES.index((copula, L))
    res = check("arms", "numpy", PROB, L=L, seed=seed, hyper={"copula": copula}, n_tests=4 * len(CASES), max_R=400_000)
    assert res.verdict == "pass", f"{res.line()} (seed={seed})"


@pytest.mark.parametrize("L", [3, 5])
def test_variance_below_rloo(L: int) -> None:
    R, seed = 100_000, 80 + L
    G = estimates("arms", "numpy", PROB, L, R, seed)["logits"]
    G0 = estimates("score_function_rloo", "numpy", PROB, L, R, seed + 1)["logits"]
    s, s0 = ((G - G.mean(0)) ** 2).mean(1), ((G0 - G0.mean(0)) ** 2).mean(1)
    z = (s0.mean() - s.mean()) / math.hypot(s.std(ddof=1), s0.std(ddof=1)) * math.sqrt(R)
    assert z > Z_VAR, f"L={L}: Var {s.mean():.4g} vs RLOO {s0.mean():.4g}, z = {z:.2f} (seed={seed})"
