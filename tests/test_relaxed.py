"""Relaxed and straight-through estimators (gumbel_softmax, straight_through, st_gumbel): all biased.

- declared capabilities (biased, temperature hyperparameter, distributions);
- exact per-sample formulas on fixed noise (hand-computed from the same uniforms) and cross-backend
  agreement on identical noise;
- bias against the exact gradient: the estimator's own expectation (1-D quadrature over the logistic noise
  for Bernoulli, D = 1; enumeration for straight-through) matches the Monte Carlo mean (z-test), the bias
  shrinks as τ -> 0 and the variance grows (z-tests on differences, fixed seeds, stated tolerances).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from harness.backends import get_backend
from harness.measure.check import draw
from harness.problems import ProblemSpec, example_problems
from harness.registry import get_estimator
from harness.registry.context import make_context

NAMES = ("gumbel_softmax", "straight_through", "st_gumbel")
BACKENDS = ("numpy", "torch", "jax")
EXAMPLES = example_problems("bernoulli") + example_problems("categorical")
Z_AGREE = 4.0  # |z| bound for "MC mean equals its exact expectation" (≈6e-5 two-sided per test)
Z_DIFF = 3.0  # one-sided z bound for "bias at high τ > bias at low τ" and "variance grows"
BERN = ProblemSpec("bernoulli", "quadratic", 1, {"logits": 1.0}, {"k": 0.2})
CAT = ProblemSpec("categorical", "categorical_target", 1, {"logits": [0.5, -0.5, 1.0]})


def _uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """What NumpySourcedNoise.uniform draws (float64)."""
    return np.clip(rng.random(shape), np.finfo(np.float64).tiny, 1.0 - np.finfo(np.float64).epsneg)


def _run(name: str, backend: str, problem, L: int, R: int, seed: int, hyper: dict | None = None) -> np.ndarray:
    B = get_backend(backend)
    spec = get_estimator(name, backend)
    noise = B.numpy_noise(np.random.default_rng(seed), "float64", "cpu")
    ctx = make_context(problem, B, L=L, R=R, noise=noise, hyper={**spec.defaults(), **(hyper or {})})
    return np.asarray(B.to_numpy(spec.fn(ctx)["logits"]), np.float64)


def test_declared_capabilities() -> None:
    for name in NAMES:
        for b in BACKENDS:
            spec = get_estimator(name, b)
            assert not spec.unbiased and spec.reference
            assert set(spec.distributions) == {"bernoulli", "categorical"}
            assert ("temperature" in spec.hyperparameters) == (name != "straight_through")
            assert spec.doc


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("prob", EXAMPLES, ids=[p.label() for p in EXAMPLES])
def test_cross_backend_identical_noise(name: str, prob) -> None:
    problem, seed = prob.build(), 11
    ref = _run(name, "numpy", problem, L=5, R=6, seed=seed)
    for b in ("torch", "jax"):
        out = _run(name, b, problem, L=5, R=6, seed=seed)
        np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-12, err_msg=f"{name} {b} vs numpy, seed={seed}")


def test_bernoulli_per_sample_formulas() -> None:
    """D = 1 by hand: z = σ((θ+ℓ)/τ), b = 1[θ+ℓ > 0], p = σ(θ), f'(x) = 2(x − k)."""
    problem, seed, R, L, tau, k, th = BERN.build(), 5, 3, 4, 0.5, 0.2, 1.0
    u = _uniform(np.random.default_rng(seed), (R, L, 1))
    x = th + np.log(u) - np.log1p(-u)
    z, b, p = special.expit(x / tau), (x > 0).astype(float), special.expit(th)
    hand = {
        "gumbel_softmax": 2 * (z - k) * z * (1 - z) / tau,
        "straight_through": 2 * (b - k) * p * (1 - p),
        "st_gumbel": 2 * (b - k) * z * (1 - z) / tau,
    }
    for name, per_sample in hand.items():
        for backend in BACKENDS:
            out = _run(name, backend, problem, L, R, seed, {"temperature": tau} if name != "straight_through" else {})
            np.testing.assert_allclose(out, per_sample.mean(1), rtol=1e-10, err_msg=f"{name} {backend} seed={seed}")


def test_categorical_per_sample_formulas() -> None:
    """K = 3 by hand: s = softmax((θ+g)/τ), ĝ_j = Σ_k f'_k ∂s_k/∂θ_j with an explicit Jacobian."""
    problem, seed, R, L, tau = CAT.build(), 6, 2, 3, 0.7
    th = np.array([0.5, -0.5, 1.0])
    t = problem.op["target"]
    g = -np.log(-np.log(_uniform(np.random.default_rng(seed), (R, L, 1, 3))))
    out = {n: np.zeros((R, L, 3)) for n in NAMES}
    p = special.softmax(th)
    for r in range(R):
        for li in range(L):
            s = special.softmax((th + g[r, li, 0]) / tau)
            J = (np.diag(s) - np.outer(s, s)) / tau  # ∂s_k/∂θ_j
            Jp = np.diag(p) - np.outer(p, p)
            b = np.eye(3)[np.argmax(th + g[r, li, 0])]
            out["gumbel_softmax"][r, li] = J.T @ (2 * (s - t))
            out["st_gumbel"][r, li] = J.T @ (2 * (b - t))
            out["straight_through"][r, li] = Jp.T @ (2 * (b - t))
    for name in NAMES:
        hyper = {"temperature": tau} if name != "straight_through" else {}
        res = _run(name, "numpy", problem, L, R, seed, hyper)
        np.testing.assert_allclose(res[:, 0], out[name].mean(1), rtol=1e-10, err_msg=f"{name} seed={seed}")


def _quad_moments(name: str, tau: float, th: float = 1.0, k: float = 0.2) -> tuple[float, float]:
    """Exact mean and variance of the single-sample Bernoulli estimator (D = 1) by quadrature over x = θ + ℓ."""
    dens = lambda x: special.expit(x - th) * special.expit(th - x)  # noqa: E731
    fprime_at = (lambda x: special.expit(x / tau)) if name == "gumbel_softmax" else (lambda x: float(x > 0))

    def g(x: float) -> float:
        s = special.expit(x / tau)
        return 2 * (fprime_at(x) - k) * s * (1 - s) / tau

    opts = dict(points=[0.0], limit=400, epsabs=1e-12, epsrel=1e-10)
    m = integrate.quad(lambda x: g(x) * dens(x), -60, 60, **opts)[0]
    m2 = integrate.quad(lambda x: g(x) ** 2 * dens(x), -60, 60, **opts)[0]
    return m, m2 - m * m


def _stats(G: np.ndarray, exact: np.ndarray) -> tuple[float, float, float, float, np.ndarray]:
    """RMS bias over coordinates with its delta-method SE, mean variance with SE, per-coord means."""
    R = G.shape[0]
    G = G.reshape(R, -1)
    m, se = G.mean(0), G.std(0, ddof=1) / math.sqrt(R)
    d = m - exact.ravel()
    bias = float(np.sqrt(np.mean(d**2)))
    bias_se = float(np.sqrt(np.sum((d / (d.size * max(bias, 1e-300))) ** 2 * se**2)))
    v_r = ((G - m) ** 2).mean(1) * R / (R - 1)
    return bias, bias_se, float(v_r.mean()), float(v_r.std(ddof=1) / math.sqrt(R)), m


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel"])
def test_bernoulli_bias_shrinks_variance_grows(name: str) -> None:
    """D = 1, θ = 1, f = (b − 0.2)²: quadrature gives the exact bias; the bias is not monotone over all τ
    (gumbel_softmax's crosses zero near τ = 1 here), so the test uses τ in (0.5, 0.2, 0.05)."""
    problem, R, seed = BERN.build(), 100_000, 21
    exact = problem.exact.grads["logits"]
    taus = (0.5, 0.2, 0.05)
    moments = [_quad_moments(name, t) for t in taus]
    biases = [abs(m - exact[0]) for m, _ in moments]
    assert biases[0] > biases[1] > biases[2], f"{name}: exact biases {biases} not shrinking"
    assert moments[0][1] < moments[1][1] < moments[2][1], f"{name}: exact variances not growing"
    measured = []
    for i, (tau, (m_ex, v_ex)) in enumerate(zip(taus, moments)):
        G = draw(get_estimator(name, "numpy"), problem, L=1, R=R, seed=seed + i, hyper={"temperature": tau})["logits"]
        b, b_se, v, v_se, m = _stats(G, exact)
        z_mean = (m[0] - m_ex) / (G.std(ddof=1) / math.sqrt(R))
        assert abs(z_mean) < Z_AGREE, f"{name} τ={tau}: mean {m[0]} vs quadrature {m_ex}, z={z_mean} (seed={seed + i})"
        assert abs(v - v_ex) < Z_AGREE * v_se, f"{name} τ={tau}: variance {v} vs quadrature {v_ex} (seed={seed + i})"
        measured.append((b, b_se, v, v_se))
    (b0, s0, v0, vs0), (b2, s2, v2, vs2) = measured[0], measured[2]
    assert (b0 - b2) / math.hypot(s0, s2) > Z_DIFF, f"{name}: bias {b0}±{s0} (τ=0.5) vs {b2}±{s2} (τ=0.05)"
    assert (v2 - v0) / math.hypot(vs0, vs2) > Z_DIFF, f"{name}: variance {v0} (τ=0.5) vs {v2} (τ=0.05)"


@pytest.mark.parametrize("name", ["gumbel_softmax", "st_gumbel"])
def test_categorical_bias_shrinks_variance_grows(name: str) -> None:
    problem, R, seed = CAT.build(), 100_000, 31
    exact = problem.exact.grads["logits"]
    stats = []
    for i, tau in enumerate((1.0, 0.2, 0.05)):
        G = draw(get_estimator(name, "numpy"), problem, L=1, R=R, seed=seed + i, hyper={"temperature": tau})["logits"]
        stats.append(_stats(G, exact)[:4])
    for (b_hi, s_hi, v_hi, vs_hi), (b_lo, s_lo, v_lo, vs_lo) in zip(stats, stats[1:]):
        assert (b_hi - b_lo) / math.hypot(s_hi, s_lo) > Z_DIFF, (
            f"{name}: bias {b_hi}±{s_hi} -> {b_lo}±{s_lo} (seed={seed})"
        )
        assert (v_lo - v_hi) / math.hypot(vs_hi, vs_lo) > Z_DIFF, f"{name}: variance {v_hi} -> {v_lo} (seed={seed})"
    assert stats[0][0] / stats[0][1] > Z_DIFF, f"{name}: bias at τ=1 not detectable (seed={seed})"


def test_straight_through_expectation_and_bias() -> None:
    """E[ST_d] = p(1−p)(p f'(1) + (1−p) f'(0)) by enumeration; exact is p(1−p)(f(1) − f(0))."""
    prob = ProblemSpec("bernoulli", "quadratic", 3, {"logits": [-1.0, 0.0, 2.0]}, {"k": 0.2})
    problem, R, seed, k = prob.build(), 50_000, 41, 0.2
    p = special.expit(np.array([-1.0, 0.0, 2.0]))
    expect = p * (1 - p) * (p * 2 * (1 - k) + (1 - p) * 2 * (0 - k))
    exact = problem.exact.grads["logits"]
    for backend in BACKENDS:
        G = draw(get_estimator("straight_through", backend), problem, L=1, R=R, seed=seed)["logits"]
        m, se = G.mean(0), G.std(0, ddof=1) / math.sqrt(R)
        z = (m - expect) / se
        assert np.all(np.abs(z) < Z_AGREE), f"{backend}: mean {m} vs enumeration {expect}, z={z} (seed={seed})"
        # logits -1 and 2 are biased (p ≠ 1/2), logit 0 is not (quadratic f, p = 1/2)
        zb = (m - exact) / se
        assert np.all(np.abs(zb[[0, 2]]) > 10) and abs(zb[1]) < Z_AGREE, f"{backend}: z vs exact {zb} (seed={seed})"
