"""Variances against exact closed forms, and exact per-sample formulas with fixed noise.

normal(loc=0.5, scale=1.5), f(z) = z^2 (quadratic, k = 0): single-sample pathwise estimates are
∂loc = 2z and ∂scale = 2zε with z = μ + σε, so Var[∂loc] = 4σ² = 9 and Var[∂scale] = 4(μ² + 2σ²) = 19.
The z-test uses the sample variance's standard error from the fourth central moment.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.backends import get_backend
from harness.measure.check import draw, z_critical
from harness.problems import ProblemSpec
from harness.registry import get_estimator
from harness.registry.context import make_context

PROB = ProblemSpec("normal", "quadratic", 1, {"loc": 0.5, "scale": 1.5}, {"k": 0.0})
ZC = z_critical(1e-3, 6 + 6)  # 3 backends × 2 params, two tests


def _var_z(x: np.ndarray, truth: float) -> float:
    x = x.ravel()
    v = x.var(ddof=1)
    m4 = np.mean((x - x.mean()) ** 4)
    se = math.sqrt(max(m4 - v**2, 0.0) / len(x))
    return abs(v - truth) / se


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_pathwise_single_sample_variance(backend: str) -> None:
    seed = 20240601
    G = draw(get_estimator("pathwise", backend), PROB.build(), L=1, R=200000, seed=seed)
    for name, truth in (("loc", 9.0), ("scale", 19.0)):
        z = _var_z(G[name], truth)
        assert z < ZC, f"{backend} Var[{name}] = {G[name].var():.4f} vs {truth}: z = {z:.2f} (seed={seed})"
        # power: a 5% error in the variance would be detected (half-width below 5% of the truth)
        x = G[name].ravel()
        se = math.sqrt(max(np.mean((x - x.mean()) ** 4) - x.var() ** 2, 0.0) / len(x))
        assert ZC * se < 0.05 * truth, f"underpowered: half-width {ZC * se:.3f} (seed={seed})"


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_score_function_single_sample_variance(backend: str) -> None:
    # REINFORCE with f = z^2: ∂loc = z^2 (z-μ)/σ²; its variance by Gaussian moments (Isserlis), μ=.5, σ=1.5
    mu, s = 0.5, 1.5
    rng = np.random.default_rng(0)
    eps = rng.standard_normal(4_000_000)
    z = mu + s * eps
    est = z**2 * eps / s
    exact_var_loc = _gaussian_sf_loc_var(mu, s)
    assert abs(est.var() - exact_var_loc) / exact_var_loc < 0.02  # sanity of the closed form itself
    seed = 99
    G = draw(get_estimator("score_function", backend), PROB.build(), L=1, R=200000, seed=seed)
    zval = _var_z(G["loc"], exact_var_loc)
    assert zval < ZC, f"{backend}: Var = {G['loc'].var():.3f} vs {exact_var_loc:.3f}, z={zval:.2f} (seed={seed})"


def _gaussian_sf_loc_var(mu: float, s: float) -> float:
    """Var[z² (z−μ)/σ²] for z ~ N(μ, σ²), with z = μ + σε: E[(μ+σε)^4 ε²]/σ² − (2μ)²."""
    # E[(μ+σε)^4 ε^2] = μ^4 E[ε²] + 6μ²σ² E[ε^4] + σ^4 E[ε^6] (odd moments vanish) = μ^4 + 18μ²σ² + 15σ^4
    second = (mu**4 + 18 * mu**2 * s**2 + 15 * s**4) / s**2
    return second - (2 * mu) ** 2


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax"])
def test_pathwise_per_sample_formula_fixed_noise(backend: str) -> None:
    """With identical base noise every backend reproduces ∂loc = mean 2z, ∂scale = mean 2zε exactly."""
    prob = PROB.build()
    B = get_backend(backend)
    rng = np.random.default_rng(7)
    ctx = make_context(prob, B, L=5, R=3, noise=B.numpy_noise(rng, "float64", "cpu"))
    out = get_estimator("pathwise", backend).fn(ctx)
    eps = np.random.default_rng(7).standard_normal((3, 5, 1))
    z = 0.5 + 1.5 * eps
    np.testing.assert_allclose(B.to_numpy(out["loc"]), (2 * z).mean(1), rtol=1e-12)
    np.testing.assert_allclose(B.to_numpy(out["scale"]), (2 * z * eps).mean(1), rtol=1e-12)


@pytest.mark.parametrize("name", ["score_function", "score_function_rloo", "pathwise"])
def test_identical_noise_gives_identical_estimates(name: str) -> None:
    prob = ProblemSpec("normal", "cos", 3, {"loc": [0.0, 1.0, -0.5], "scale": [0.5, 1.0, 2.0]}).build()
    outs = {}
    for backend in ("numpy", "torch", "jax"):
        B = get_backend(backend)
        ctx = make_context(prob, B, L=4, R=50, noise=B.numpy_noise(np.random.default_rng(3), "float64", "cpu"))
        outs[backend] = {k: B.to_numpy(v) for k, v in get_estimator(name, backend).fn(ctx).items()}
    for backend in ("torch", "jax"):
        for k in outs["numpy"]:
            np.testing.assert_allclose(outs[backend][k], outs["numpy"][k], rtol=1e-9, atol=1e-12)
