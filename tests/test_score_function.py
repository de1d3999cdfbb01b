"""Score-function family: unbiasedness, exact per-sample formulas, closed-form variances, moments table.

Fast by default (NumPy statistics, identical-noise agreement of the PyTorch/JAX autodiff implementations
with the analytic NumPy ones); the full check_problem sweep on PyTorch and JAX is marked slow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from estimators.score_function import MOMENTS, cv_coefficients
from harness.backends import get_backend
from harness.measure.check import applicable_problems, check_problem, draw
from harness.problems import DISTRIBUTIONS, ProblemSpec
from harness.registry import get_estimator
from harness.registry.context import make_context

ALPHA = 1e-3
NEW = ("score_function_cv", "score_function_delta", "score_function_oracle")
DELTA_PROBLEMS = applicable_problems(get_estimator("score_function_delta", "numpy"))
CASES = [(n, p, {}) for n in NEW for p in applicable_problems(get_estimator(n, "numpy"))]
CASES += [("score_function_delta", p, {"order": 1}) for p in DELTA_PROBLEMS]
N_COORDS = sum(sum(int(np.prod(v.shape)) for v in p.build().exact.grads.values()) for _, p, _ in CASES)
# default run: the distributions the delta method tabulates plus the discrete ones; the "*" estimators on
# the other families (von_mises, student_t, mixtures, mvn, ...: costlier samplers) run under -m slow
CORE = ("normal", "gamma", "exponential", "beta", "bernoulli", "categorical")
PARAMS = [
    pytest.param(
        i, id=f"{c[0]}{c[2] or ''}-{c[1].label()}", marks=() if c[1].distribution in CORE else pytest.mark.slow
    )
    for i, c in enumerate(CASES)
]


def fixed(name: str, problem, backend: str, *, L: int, R: int, seed: int, hyper=None) -> dict[str, np.ndarray]:
    """One call on identical NumPy-sourced noise (same draws on every backend); JAX is jitted with the
    parameters traced and the noise baked in as constants (op-by-op JAX compiles every op: 10x slower)."""
    spec, B = get_estimator(name, backend), get_backend(backend)
    noise = B.numpy_noise(np.random.default_rng(seed), "float64", "cpu")
    ctx = make_context(problem, B, L=L, R=R, noise=noise, hyper={**spec.defaults(), **(hyper or {})})
    if backend == "jax":
        import jax

        out = jax.jit(lambda params: spec.fn(ctx.with_(params=params)))(ctx.params)
    else:
        out = spec.fn(ctx)
    return {k: np.asarray(B.to_numpy(out[k]), np.float64) for k in problem.param_names}


def powered_check(spec, problem, *, seed: int, hyper: dict, L: int = 16, R: int = 20000, jit: bool = False):
    """check_problem, re-run (fresh seed, more replicates) while underpowered: the delta-method cells are
    heavy-tailed, so a first-pass variance can understate the replicates needed.  Power is never relaxed."""
    res = check_problem(
        spec, problem, L=L, R=R, max_R=250000, seed=seed, alpha=ALPHA, n_tests=N_COORDS, hyper=hyper, jit=jit
    )
    for retry in range(2):
        if res.verdict != "underpowered":
            break
        R2 = int(min(1_000_000, res.R * res.halfwidth_ratio**2 * 1.5))
        res = check_problem(
            spec, problem, L=L, R=R2, seed=seed + 10 * (retry + 1), alpha=ALPHA, n_tests=N_COORDS, hyper=hyper, jit=jit
        )
    return res


@pytest.mark.parametrize("i", PARAMS)
def test_unbiased_numpy(i: int) -> None:
    name, prob, hyper = CASES[i]
    res = powered_check(get_estimator(name, "numpy"), prob.build(), seed=1000 + i, hyper=hyper)
    assert res.verdict == "pass", f"{name} {hyper} " + res.line()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("i", PARAMS)
def test_unbiased_autodiff_backends(i: int, backend: str) -> None:
    name, prob, hyper = CASES[i]
    res = powered_check(get_estimator(name, backend), prob.build(), seed=2000 + i, hyper=hyper, jit=True)
    assert res.verdict == "pass", f"{name} {backend} {hyper} " + res.line()


# JAX runs jitted with NumPy-sourced noise baked in as constants: distributions whose sampler draws Gamma
# variates from traced parameters (gamma, student_t, ...) cannot be fed that way and are left to torch.
JAX_DISTS = ("normal", "categorical", "bernoulli", "exponential")


def _problems(name: str, backend: str) -> list:
    probs = applicable_problems(get_estimator(name, "numpy"))
    if backend == "torch":
        return probs
    return list({p.distribution: p for p in reversed(probs) if p.distribution in JAX_DISTS}.values())


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("name", NEW + ("score_function",))
def test_autodiff_equals_analytic_on_identical_noise(name: str, backend: str) -> None:
    """Autodiff of the surrogate (and per-sample autodiff scores, nested autodiff of g at μ) reproduces
    the NumPy analytic formulas draw for draw: score_np, the MOMENTS derivatives, grad_np/hess_np."""
    for j, prob in enumerate(_problems(name, backend)):
        problem = prob.build()
        for hyper in ({}, {"order": 1}) if name == "score_function_delta" else ({},):
            ref = fixed(name, problem, "numpy", L=5, R=3, seed=300 + j, hyper=hyper)
            got = fixed(name, problem, backend, L=5, R=3, seed=300 + j, hyper=hyper)
            for k in ref:
                scale = 1e-9 * (1 + np.abs(ref[k]).max())
                np.testing.assert_allclose(got[k], ref[k], rtol=1e-8, atol=scale, err_msg=f"{prob.label()} {k} {hyper}")


def test_quick_unbiased_on_autodiff_backends() -> None:
    """A few cells through the real runner on PyTorch and JAX (jit); the full sweep is marked slow."""
    picks = {  # estimator: (problem label prefix, L, R)
        "score_function_cv": ("gamma(concentration=2", 8, 10000),
        "score_function_delta": ("normal(loc=0.3", 32, 10000),
    }
    for name, (start, L, R) in picks.items():
        prob = next(p for p in applicable_problems(get_estimator(name, "numpy")) if p.label().startswith(start))
        for backend in ("torch", "jax"):
            spec = get_estimator(name, backend)
            res = check_problem(spec, prob.build(), L=L, R=R, max_R=4 * R, seed=5, alpha=ALPHA, n_tests=24, jit=True)
            assert res.verdict == "pass", f"{name} {backend} " + res.line()


# -- exact per-sample formula with fixed noise -------------------------------------------------------
def test_cv_exact_formula_with_fixed_noise() -> None:
    """Normal: z = μ + σε (L draws), z' = μ + σε' (M independent draws), ĉ = Σ f' s'² / Σ s'²."""
    problem = ProblemSpec("normal", "cos", dim=2, params={"loc": [0.2, -0.4], "scale": [0.7, 1.3]}).build()
    mu, s = problem.params_np["loc"], problem.params_np["scale"]
    L, M, R, seed = 5, 7, 4, 17
    got = fixed("score_function_cv", problem, "numpy", L=L, R=R, seed=seed, hyper={"n_cv": M})
    rng = np.random.default_rng(seed)
    eps, eps2 = rng.standard_normal((R, L, 2)), rng.standard_normal((R, M, 2))
    f = np.cos(mu + s * eps).sum(-1)[..., None]
    f2 = np.cos(mu + s * eps2).sum(-1)[..., None]
    for k, score in {"loc": lambda e: e / s, "scale": lambda e: (e * e - 1) / s}.items():
        s1, s2 = score(eps), score(eps2)
        c = (f2 * s2**2).sum(1) / (s2**2).sum(1)
        np.testing.assert_allclose(got[k], ((f - c[:, None]) * s1).mean(1), rtol=1e-12, err_msg=k)


def test_cv_coefficient_is_independent_of_the_main_batch() -> None:
    """ĉ is computed from its own draws: the main batch's noise is consumed first and not reused."""
    problem = ProblemSpec("normal", "quadratic", dim=1, params={"loc": 0.5, "scale": 1.0}).build()
    B = get_backend("numpy")
    ctx = make_context(
        problem, B, L=3, R=2, noise=B.numpy_noise(np.random.default_rng(0), "float64", "cpu"), hyper={"n_cv": 6}
    )
    ctx.sample()  # the main batch
    c = cv_coefficients(ctx)
    rng = np.random.default_rng(0)
    rng.standard_normal((2, 3, 1))
    z2 = 0.5 + rng.standard_normal((2, 6, 1))
    s2 = (z2 - 0.5) ** 2
    np.testing.assert_allclose(c["loc"], ((z2**2) * s2).sum(1) / s2.sum(1), rtol=1e-12)


# -- closed-form variances on the Gaussian quadratic ---------------------------------------------------
X, WTS = np.polynomial.hermite_e.hermegauss(30)
WTS = WTS / WTS.sum()  # E over ε ~ N(0, 1), exact for polynomials of degree < 60


def E(fn) -> float:
    return float(WTS @ fn(X))


def exact_per_sample_var(mu, s, j: int, score, site, b: float) -> float:
    r"""Var[(Σ_d r_d(ε_d) − b)\, s_j(ε_j)] for independent ε_d ~ N(0, 1), by 1-D Gauss–Hermite moments."""
    rest = [d for d in range(len(mu)) if d != j]
    mA = sum(E(lambda e, d=d: site(d, e)) for d in rest) - b
    vA = sum(E(lambda e, d=d: site(d, e) ** 2) - E(lambda e, d=d: site(d, e)) ** 2 for d in rest)
    r, sc = (lambda e: site(j, e)), score
    second = (
        E(lambda e: r(e) ** 2 * sc(e) ** 2)
        + 2 * mA * E(lambda e: r(e) * sc(e) ** 2)
        + (vA + mA**2) * E(lambda e: sc(e) ** 2)
    )
    first = E(lambda e: r(e) * sc(e)) + mA * E(sc)
    return second - first**2


def _var(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dev2 = (g - g.mean(0)) ** 2
    return g.var(0, ddof=1), dev2.std(0, ddof=1) / math.sqrt(g.shape[0])


QUAD = ProblemSpec(
    "normal", "quadratic", dim=2, params={"loc": [0.5, -0.3], "scale": [1.5, 0.8]}, objective_params={"k": 0.2}
)


def test_closed_form_variances_gaussian_quadratic() -> None:
    """Per-sample variances (L = 1) of score_function and the oracle baseline vs Gaussian moments; the
    oracle's is lower; score_function_cv with a large independent batch attains the c* variance."""
    problem = QUAD.build()
    mu, s, k = problem.params_np["loc"], problem.params_np["scale"], problem.op["k"]
    site = lambda d, e: (mu[d] + s[d] * e - k) ** 2
    scores = {"loc": lambda j: lambda e: e / s[j], "scale": lambda j: lambda e: (e * e - 1) / s[j]}
    Ef = problem.exact.value
    seed, R = 61, 100000
    G = {
        n: draw(get_estimator(n, "numpy"), problem, L=1, R=R, seed=seed)
        for n in ("score_function", "score_function_oracle")
    }
    Gcv = draw(get_estimator("score_function_cv", "numpy"), problem, L=4, R=4000, seed=seed, hyper={"n_cv": 1000})
    for name in ("loc", "scale"):
        for j in range(2):
            sc = scores[name](j)
            v_plain = exact_per_sample_var(mu, s, j, sc, site, 0.0)
            v_oracle = exact_per_sample_var(mu, s, j, sc, site, Ef)
            c_star = (
                E(lambda e: site(j, e) * sc(e) ** 2)
                + sum(E(lambda e, d=d: site(d, e)) for d in range(2) if d != j) * E(lambda e: sc(e) ** 2)
            ) / E(lambda e: sc(e) ** 2)
            v_cv = exact_per_sample_var(mu, s, j, sc, site, c_star)
            assert v_cv <= v_oracle < v_plain, (name, j, v_cv, v_oracle, v_plain)
            for est, v in (("score_function", v_plain), ("score_function_oracle", v_oracle)):
                var, se = _var(G[est][name][:, j])
                assert abs(var - v) <= 4.5 * se, f"{est} {name}[{j}]: {var:.5g} vs exact {v:.5g} ({seed=})"
            var, se = _var(Gcv[name][:, j])
            assert v_cv / 4 - 4.5 * se <= var <= 1.05 * v_cv / 4 + 4.5 * se, (
                f"cv {name}[{j}]: {var:.5g} vs {v_cv / 4:.5g}"
            )


def test_delta_method_exact_cases() -> None:
    """Second order is exact for a quadratic f (zero variance); first order leaves (z−μ)² = σ²ε² per site."""
    problem = QUAD.build()
    g = fixed("score_function_delta", problem, "numpy", L=3, R=5, seed=3)
    for k, e in problem.exact.grads.items():
        np.testing.assert_allclose(g[k], np.broadcast_to(e, g[k].shape), rtol=1e-12, atol=1e-12, err_msg=k)
    mu, s = problem.params_np["loc"], problem.params_np["scale"]
    seed, R = 62, 200000
    G = draw(get_estimator("score_function_delta", "numpy"), problem, L=1, R=R, seed=seed, hyper={"order": 1})
    resid = lambda d, e: (s[d] * e) ** 2  # f − h per site
    for j in range(2):
        v = exact_per_sample_var(mu, s, j, lambda e, j=j: e / s[j], resid, 0.0)
        var, se = _var(G["loc"][:, j])
        assert abs(var - v) <= 4.5 * se, f"delta order 1 loc[{j}]: {var:.5g} vs exact {v:.5g} ({seed=})"


# -- the moments table behind the delta method -------------------------------------------------------
SCIPY = {
    "normal": ({"loc": 0.3, "scale": 1.7}, lambda P: stats.norm(P["loc"], P["scale"])),
    "gamma": ({"concentration": 2.5, "rate": 1.5}, lambda P: stats.gamma(P["concentration"], scale=1 / P["rate"])),
    "exponential": ({"rate": 0.7}, lambda P: stats.expon(scale=1 / P["rate"])),
    "beta": (
        {"concentration1": 2.0, "concentration0": 3.5},
        lambda P: stats.beta(P["concentration1"], P["concentration0"]),
    ),
    "bernoulli": ({"logits": 0.4}, lambda P: stats.bernoulli(1 / (1 + np.exp(-P["logits"])))),
}


@pytest.mark.parametrize("dist", sorted(MOMENTS))
def test_moments_table(dist: str) -> None:
    """Mean/variance vs scipy.stats, θ-derivatives vs central differences, parameter names vs the file."""
    P0, frozen = SCIPY[dist]
    B = get_backend("numpy")
    P = {k: np.array([v]) for k, v in P0.items()}
    mean, var = MOMENTS[dist][0](B, P)
    ref = frozen({k: float(v) for k, v in P0.items()})
    np.testing.assert_allclose([mean[0], var[0]], [ref.mean(), ref.var()], rtol=1e-12)
    dmean, dvar = MOMENTS[dist][1](P)
    for k in P:
        h = 1e-6 * max(1.0, abs(P0[k]))
        up, dn = MOMENTS[dist][0](B, {**P, k: P[k] + h}), MOMENTS[dist][0](B, {**P, k: P[k] - h})
        np.testing.assert_allclose(dmean[k], (up[0] - dn[0]) / (2 * h), rtol=1e-6, atol=1e-9, err_msg=f"d mean / d {k}")
        np.testing.assert_allclose(dvar[k], (up[1] - dn[1]) / (2 * h), rtol=1e-6, atol=1e-9, err_msg=f"d var / d {k}")
    if dist in DISTRIBUTIONS:  # distributions being added in parallel: names must match once they exist
        assert set(DISTRIBUTIONS[dist].params) == set(P0)
