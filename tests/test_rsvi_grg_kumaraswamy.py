"""RSVI, GRG and the Kumaraswamy surrogate: exact per-sample formulas, the accepted-noise density, bias checks.

The registry-driven battery (tests/test_estimators_generic.py) already runs rsvi and grg (declared
unbiased) through the Bonferroni z-test with a power check on every shipped gamma/beta/dirichlet example,
and checks that torch and jax reproduce numpy on identical noise with default hyperparameters.  Here:

- Marsaglia–Tsang: the accepted ε of the real acceptance–rejection sampler has the density π(ε; α) the
  estimator uses (Kolmogorov–Smirnov against F_π(ε) = F_Gamma(h(ε, α))), π integrates to 1, h⁻¹ inverts h;
- per-sample formulas with fixed noise: ∂h/∂α, the boosted path ∂z/∂α and ∂α log π against central finite
  differences at the same (ε, u); GRG's g_rep + g_corr against the paper's eq. 9 assembled from the Gamma
  log-density; Kumaraswamy: moments matched, the implicit-function Jacobian against finite differences of
  the Newton solve, the path derivative against finite differences at the same u;
- unbiasedness on the small shapes the suites use (α = 0.1), rsvi without correction: its bias, measured
  by the paired difference with the corrected (unbiased) estimator on identical noise, is nonzero at B = 1
  and shrinks as B grows (one-sided z-tests, Bonferroni);
- Kumaraswamy: exactly unbiased for quadratics (quadrature of the surrogate's gradient), and its bias on
  cos is detected by the statistical test against the exact Beta gradient (with a power check);
- torch and jax reproduce numpy on identical noise for non-default hyperparameters.
Every stochastic test has a fixed seed, printed on failure.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import estimators.grg as grg
import estimators.kumaraswamy as kum
import estimators.rsvi as rsvi
from harness.backends import get_backend
from harness.measure.check import check_problem, draw, z_critical
from harness.problems import ProblemSpec
from harness.registry import get_estimator
from harness.registry.context import make_context

NP = get_backend("numpy")
KS_ALPHA = 1e-4
ALPHA = 1e-3


def _fd(fn, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    return (fn(x + h) - fn(x - h)) / (2 * h)


# -- Marsaglia–Tsang and the accepted-noise density ------------------------------------------------------------
@pytest.mark.parametrize("a", [1.1, 2.0, 10.0])
def test_accepted_noise_density_matches_rejection_sampler(a: float) -> None:
    """Run Marsaglia–Tsang itself (vectorized, one round of proposals, accepted ones kept) and compare the
    accepted ε with π(ε; a): KS against F_π(ε) = F_Gamma(h(ε, a); a)."""
    seed = 101 + int(10 * a)
    rng = np.random.default_rng(seed)
    eps, u = rng.standard_normal(200_000), rng.random(200_000)
    d = a - 1 / 3
    v = (1 + eps / np.sqrt(9 * d)) ** 3
    ok = v > 0
    accept = ok & (np.log(u) < 0.5 * eps**2 + d - d * np.where(ok, v, 1) + d * np.log(np.where(ok, v, 1)))
    acc = eps[accept]
    p = stats.kstest(acc, lambda e: stats.gamma.cdf(rsvi.mt_h(NP, e, a), a)).pvalue
    assert p > KS_ALPHA, f"accepted ε not distributed as π(ε; {a}): KS p={p} (seed={seed})"
    total = integrate.quad(lambda e: math.exp(rsvi.log_pi(NP, np.array(e), np.array(a))), -np.sqrt(9 * d), np.inf)[0]
    assert total == pytest.approx(1.0, abs=1e-8)
    g = rng.gamma(a, size=1000)
    np.testing.assert_allclose(rsvi.mt_h(NP, rsvi.mt_h_inv(NP, g, a), a), g, rtol=1e-12)


def test_rsvi_per_sample_derivatives_vs_finite_differences() -> None:
    """∂h/∂α, ∂α log π and the boosted path ∂z/∂α at fixed (ε, u) against central differences."""
    rng = np.random.default_rng(7)
    a = np.array([0.1, 0.5, 1.0, 3.0, 10.0])[:, None]
    eps = rng.standard_normal((5, 200)) * 0.8
    np.testing.assert_allclose(rsvi.mt_dh_da(eps, a + 2), _fd(lambda x: rsvi.mt_h(NP, eps, x), a + 2), rtol=1e-6)
    np.testing.assert_allclose(
        rsvi.dlog_pi_da(eps, a + 2), _fd(lambda x: rsvi.log_pi(NP, eps, x), a + 2), rtol=1e-5, atol=1e-7
    )
    for boost in (1, 4):
        nz = {"G": rng.gamma(a + boost, size=(5, 200)), "u": rng.random((boost, 5, 200))}
        z, dz, score = rsvi.boosted_gamma_np(a, nz, {"boost": boost})
        e = rsvi.mt_h_inv(NP, nz["G"], a + boost)  # ε is held fixed while α moves

        def path(x: np.ndarray) -> np.ndarray:
            return rsvi.mt_h(NP, e, x + boost) * np.prod(nz["u"] ** (1 / (x + np.arange(boost)[:, None, None])), 0)

        np.testing.assert_allclose(z, nz["G"] * np.prod(nz["u"] ** (1 / (a + np.arange(boost)[:, None, None])), 0))
        np.testing.assert_allclose(dz, _fd(path, a), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(score, _fd(lambda x: rsvi.log_pi(NP, e, x + boost), a), rtol=1e-5, atol=1e-7)


def test_grg_terms_equal_paper_decomposition() -> None:
    """Per sample: ∂α T⁻¹ against finite differences at fixed ε, and ∂α log q(ε; α) against eq. 9 of Ruiz et
    al., ∂_G log p(G)·∂αT⁻¹ + ∂α log p(G; α) + ∂α log|∂ε T⁻¹|, built from the Gamma log-density."""
    rng = np.random.default_rng(11)
    a = np.array([0.1, 0.5, 1.0, 4.0, 20.0])[:, None]
    G = rng.gamma(a, size=(5, 300))
    t = grg.grg_terms_np(a, {"G": G})
    np.testing.assert_allclose(t["G"], G, rtol=1e-10)
    eps = t["eps"]

    def inv(x: np.ndarray) -> np.ndarray:  # T⁻¹(ε; α) at fixed ε
        return np.exp(np.sqrt(special.polygamma(1, x)) * eps + special.digamma(x))

    np.testing.assert_allclose(t["dG"], _fd(inv, a), rtol=1e-6)
    dlogJ = _fd(lambda x: np.log(inv(x) * np.sqrt(special.polygamma(1, x))), a)  # J = ∂ε T⁻¹ = G σ(α)
    score_z = (a - 1) / G - 1  # ∂_G log Gamma(G; α, 1)
    score_a = np.log(G) - special.digamma(a)  # ∂α log Gamma(G; α, 1)
    np.testing.assert_allclose(t["score"], score_z * t["dG"] + score_a + dlogJ, rtol=1e-5, atol=1e-6)


def test_grg_estimate_is_g_rep_plus_g_corr() -> None:
    """grg on Gamma(α, β) with f(z) = (z − k)², L = 1, fixed noise: f'(z) ∂z/∂α + f(z) ∂α log q, ∂β = −f' z/β."""
    problem = ProblemSpec("gamma", "quadratic", 3, {"concentration": [0.3, 1.0, 5.0], "rate": 2.0}, {"k": 0.5}).build()
    seed, R = 23, 50
    ctx = make_context(problem, NP, L=1, R=R, noise=NP.numpy_noise(np.random.default_rng(seed), "float64", "cpu"))
    out = grg.grg_numpy(ctx)
    a, b = problem.params_np["concentration"], problem.params_np["rate"]
    G = np.random.default_rng(seed).standard_gamma(np.broadcast_to(a, (R, 1, 3)))[:, 0]  # the same draws
    t = grg.grg_terms_np(a, {"G": G})
    z = G / b
    fz, fp = ((z - 0.5) ** 2).sum(-1, keepdims=True), 2 * (z - 0.5)
    np.testing.assert_allclose(out["concentration"], fp * t["dG"] / b + fz * t["score"], rtol=1e-10)
    np.testing.assert_allclose(out["rate"], -fp * z / b, rtol=1e-10)


# -- Kumaraswamy ------------------------------------------------------------------------------------------------
AB = (np.array([0.1, 0.5, 1.0, 10.0, 2.0, 0.7, 3.0]), np.array([2.0, 2.0, 2.0, 2.0, 1.0, 1.3, 0.2]))


def test_kumaraswamy_matches_moments_and_identity_lines() -> None:
    a, b = AB
    m = kum.match(NP, a, b)
    A, Bq = np.exp(m["la"]), np.exp(m["lb"])
    for n in (1, 2):
        k_moment = Bq * special.beta(1 + n / A, Bq)
        beta_moment = special.poch(a, n) / special.poch(a + b, n)
        np.testing.assert_allclose(k_moment, beta_moment, rtol=1e-10)
    # Beta(1, b) = K(1, b) and Beta(a, 1) = K(a, 1)
    np.testing.assert_allclose([A[2], Bq[2]], [1.0, 2.0], rtol=1e-10)
    np.testing.assert_allclose([A[4], Bq[4]], [2.0, 1.0], rtol=1e-10)


def test_kumaraswamy_jacobian_and_path_vs_finite_differences() -> None:
    a, b = AB
    m = kum.match(NP, a, b)
    h = 1e-6
    for j, (da, db) in enumerate(((h, 0.0), (0.0, h))):
        up, dn = kum.match(NP, a + da, b + db), kum.match(NP, a - da, b - db)
        np.testing.assert_allclose(m["J"][0, j], (up["la"] - dn["la"]) / (2 * h), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(m["J"][1, j], (up["lb"] - dn["lb"]) / (2 * h), rtol=1e-5, atol=1e-8)
    # the whole per-sample gradient at fixed u, f(z) = z²: numpy's chain rule vs finite differences in (a, b)
    problem = ProblemSpec("beta", "quadratic", 7, {"concentration1": a, "concentration0": b}, {"k": 0.0}).build()
    seed, R = 31, 5
    ctx = make_context(problem, NP, L=1, R=R, noise=NP.numpy_noise(np.random.default_rng(seed), "float64", "cpu"))
    out = kum.kumaraswamy_numpy(ctx)
    u = np.random.default_rng(seed).random((R, 1, 7))[:, 0]

    def f_of(a_: np.ndarray, b_: np.ndarray) -> np.ndarray:
        mm = kum.match(NP, a_, b_)
        return kum.kumaraswamy_path(NP, mm["la"], mm["lb"], u) ** 2

    np.testing.assert_allclose(out["concentration1"], (f_of(a + h, b) - f_of(a - h, b)) / (2 * h), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(out["concentration0"], (f_of(a, b + h) - f_of(a, b - h)) / (2 * h), rtol=1e-5, atol=1e-8)


def _surrogate_gradient(a: float, b: float, fprime) -> np.ndarray:
    """∇(a,b) E_K[f] of the matched surrogate by quadrature over u: ∫₀¹ f'(z(u)) ∂z/∂θ du."""
    m = kum.match(NP, np.array(a), np.array(b))
    A, Bq, J = float(np.exp(m["la"])), float(np.exp(m["lb"])), m["J"]

    def integrand(u: float, j: int) -> float:
        w, y = u ** (1 / Bq), -math.expm1(math.log(u) / Bq)  # y = 1 − w without cancellation
        z = y ** (1 / A)
        dz_la, dz_lb = -z * math.log(y) / A, z * w * math.log(u) / (A * y * Bq)
        return fprime(z) * (dz_la * float(J[0, j]) + dz_lb * float(J[1, j]))

    return np.array([integrate.quad(integrand, 0, 1, args=(j,), limit=200, epsabs=1e-13)[0] for j in range(2)])


@pytest.mark.parametrize(("a", "b"), [(0.5, 2.0), (3.0, 0.7), (10.0, 2.0)])
def test_kumaraswamy_exact_for_quadratics(a: float, b: float) -> None:
    """Moment matching makes ∇E_K[(z − k)²] = ∇E_Beta[(z − k)²] exactly (here by quadrature)."""
    problem = ProblemSpec("beta", "quadratic", 1, {"concentration1": a, "concentration0": b}, {"k": 0.3}).build()
    exact = np.array([problem.exact.grads[k].ravel()[0] for k in ("concentration1", "concentration0")])
    np.testing.assert_allclose(_surrogate_gradient(a, b, lambda z: 2 * (z - 0.3)), exact, rtol=1e-7, atol=1e-10)


def test_kumaraswamy_bias_on_cos_is_measured() -> None:
    """Beta(5, 5), f = cos(8z): the surrogate's gradient (quadrature) differs from the Beta gradient; the
    estimator is unbiased for the surrogate and check_problem reports 'biased' against the Beta truth.
    Power: the critical half-width must be below half the quadrature bias in every coordinate."""
    problem = ProblemSpec("beta", "cos", 1, {"concentration1": 5.0, "concentration0": 5.0}, {"omega": 8.0}).build()
    spec = get_estimator("kumaraswamy", "numpy")
    names = ("concentration1", "concentration0")
    sur = _surrogate_gradient(5.0, 5.0, lambda z: -8.0 * math.sin(8.0 * z))
    bias = sur - np.array([problem.exact.grads[k].ravel()[0] for k in names])
    seed, R = 41, 400_000
    G = draw(spec, problem, L=1, R=R, seed=seed)
    zc = z_critical(ALPHA, 2)
    for j, k in enumerate(names):
        g = G[k].ravel()
        se = g.std(ddof=1) / math.sqrt(R)
        assert zc * se < 0.5 * abs(bias[j]), f"{k}: underpowered, half-width {zc * se} vs bias {bias[j]} (seed={seed})"
        assert abs(g.mean() - sur[j]) <= zc * se, f"{k}: mean {g.mean()} vs surrogate {sur[j]} ± {se} (seed={seed})"
    res = check_problem(spec, problem, L=1, R=R, seed=seed + 1, alpha=ALPHA)
    assert res.verdict == "biased", res.line()


# -- unbiasedness on small shapes, and the bias of rsvi without correction ---------------------------------------
@pytest.mark.parametrize("name", ["rsvi", "grg"])
@pytest.mark.parametrize(
    "prob",
    [
        ProblemSpec("gamma", "quadratic", 1, {"concentration": 0.1, "rate": 1.0}, {"k": 0.0}),
        ProblemSpec("beta", "cos", 1, {"concentration1": 0.5, "concentration0": 2.0}, {"omega": 3.0}),
    ],
    ids=["gamma0.1-z2", "beta0.5-cos"],
)
def test_unbiased_on_small_shapes(name: str, prob: ProblemSpec) -> None:
    seed = 2024 + len(name)
    res = check_problem(
        get_estimator(name, "numpy"), prob.build(), L=4, R=50_000, seed=seed, alpha=ALPHA, n_tests=8, max_R=2_000_000
    )
    assert res.verdict == "pass", res.line()


def test_rsvi_without_correction_bias_shrinks_with_boost() -> None:
    """Gamma(1, 1), f = z², L = 1.  On identical noise the uncorrected estimate minus the corrected (unbiased)
    one is −f(z) ∂α log π, whose mean is exactly the uncorrected estimator's bias; its SE is small.  The bias
    at B = 1 is nonzero, and |bias| falls from B to 2B for B = 1, 2, 4 (one-sided z-tests, Bonferroni)."""
    problem = ProblemSpec("gamma", "quadratic", 1, {"concentration": 1.0, "rate": 1.0}, {"k": 0.0}).build()
    spec, R = get_estimator("rsvi", "numpy"), 200_000
    zc = z_critical(2 * ALPHA, 4)  # one-sided, 4 tests
    bias, se = {}, {}
    for boost in (1, 2, 4, 8):
        seed = 300 + boost
        on = draw(spec, problem, L=1, R=R, seed=seed, hyper={"boost": boost, "correction": True})["concentration"]
        off = draw(spec, problem, L=1, R=R, seed=seed, hyper={"boost": boost, "correction": False})["concentration"]
        d = (off - on).ravel()
        bias[boost], se[boost] = d.mean(), d.std(ddof=1) / math.sqrt(R)
    assert abs(bias[1]) > zc * se[1], f"no bias detected at B = 1: {bias[1]} ± {se[1]}"
    for b in (1, 2, 4):
        z = (abs(bias[b]) - abs(bias[2 * b])) / math.hypot(se[b], se[2 * b])
        assert z > zc, f"|bias| did not shrink from B={b} to {2 * b}: {bias} ± {se} (seeds 300+B)"


def test_rsvi_declares_hyper_dependent_bias() -> None:
    spec = get_estimator("rsvi", "numpy")
    assert spec.unbiased and spec.biased_when == {"correction": False}
    assert spec.estimator.is_unbiased() and not spec.estimator.is_unbiased({"correction": False})
    assert spec.hyperparameters["correction"].choices == (True, False)
    assert not get_estimator("kumaraswamy", "numpy").unbiased and get_estimator("grg", "numpy").unbiased


# -- cross-backend on identical noise, non-default hyperparameters -----------------------------------------------
XB = [
    ("rsvi", {"correction": False, "boost": 4}, ProblemSpec("gamma", "cos", 2, {"concentration": [0.2, 3.0]})),
    ("rsvi", {"correction": True, "boost": 1}, ProblemSpec("beta", "quadratic", 2, {"concentration1": 0.4})),
    ("rsvi", {"correction": True, "boost": 7}, ProblemSpec("dirichlet", "categorical_target", 2, {})),
    ("rsvi", {"correction": False, "boost": 2}, ProblemSpec("dirichlet", "simplex_power", 1, {})),
    ("grg", {}, ProblemSpec("beta", "cos", 3, {"concentration1": [0.1, 1.0, 10.0], "concentration0": 2.0})),
    ("kumaraswamy", {}, ProblemSpec("beta", "cos", 3, {"concentration1": [0.1, 1.0, 10.0], "concentration0": 2.0})),
]


@pytest.mark.parametrize(("name", "hyper", "prob"), XB, ids=[f"{n}-{p.label()}-{h}" for n, h, p in XB])
def test_torch_and_jax_reproduce_numpy(name: str, hyper: dict, prob: ProblemSpec) -> None:
    problem, seed = prob.build(), 59
    outs = {}
    for backend in ("numpy", "torch", "jax"):
        B = get_backend(backend)
        noise = B.numpy_noise(np.random.default_rng(seed), "float64", "cpu")
        ctx = make_context(problem, B, L=3, R=6, noise=noise, hyper=hyper)
        outs[backend] = {k: B.to_numpy(v) for k, v in get_estimator(name, backend).fn(ctx).items()}
    for backend in ("torch", "jax"):
        for k, ref in outs["numpy"].items():
            np.testing.assert_allclose(
                outs[backend][k], ref, rtol=1e-7, atol=1e-10, err_msg=f"{name} {backend} {k} (seed={seed})"
            )
