"""ARM, DisARM (Bernoulli) and ARSM (categorical): unbiasedness, per-sample formulas, exact variances.

- harness.measure.check.check_problem on every applicable example problem, all three backends: verdict "pass"
  (Bonferroni z-test plus power check);
- per-sample formulas from the same uniforms, written independently with Python loops (ARM/DisARM on
  D = 1 and D = 3 with one shared uniform vector; ARSM with explicit swaps of π);
- cross-backend agreement on identical noise;
- exact variances on the Bernoulli toy f(b) = (b − 0.499)², D = 1, p = 0.3, L = 1, by enumeration:
  REINFORCE (``score_function``) Var = p(1−p)²f(1)² + (1−p)p²f(0)² − mean²; ARM and DisARM by integrating
  over the uniform's regions (below); measured variances z-tested with the sample variance's standard error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from harness.backends import get_backend
from harness.measure.check import check_problem, draw
from harness.problems import ProblemSpec, example_problems
from harness.registry import get_estimator
from harness.registry.context import make_context

BACKENDS = ("numpy", "torch", "jax")
NAMES = {"arm": "bernoulli", "disarm": "bernoulli", "arsm": "categorical"}
CASES = [(n, b, p) for n, d in NAMES.items() for b in BACKENDS for p in example_problems(d)]
N_TESTS = sum(int(np.prod(p.build().exact.grads["logits"].shape)) for _, _, p in CASES)
Z_VAR = 4.0  # |z| bound for measured vs exact variance (≈6e-5 two-sided per test)
TOY_P, TOY_T = 0.3, 0.499


def _uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.clip(rng.random(shape), np.finfo(np.float64).tiny, 1.0 - np.finfo(np.float64).epsneg)


def _run(name: str, backend: str, problem, L: int, R: int, seed: int) -> np.ndarray:
    B = get_backend(backend)
    spec = get_estimator(name, backend)
    ctx = make_context(problem, B, L=L, R=R, noise=B.numpy_noise(np.random.default_rng(seed), "float64", "cpu"))
    return np.asarray(B.to_numpy(spec.fn(ctx)["logits"]), np.float64)


@pytest.mark.parametrize(("name", "backend", "prob"), CASES, ids=[f"{n}-{b}-{p.label()}" for n, b, p in CASES])
def test_unbiased_on_examples(name: str, backend: str, prob) -> None:
    seed = 1000 + CASES.index((name, backend, prob))
    spec = get_estimator(name, backend)
    res = check_problem(spec, prob.build(), seed=seed, n_tests=N_TESTS, max_R=200_000, jit=backend == "jax")
    assert res.verdict == "pass", f"{res.line()} (seed={seed})"


def test_declared_capabilities() -> None:
    for name, dist in NAMES.items():
        for b in BACKENDS:
            spec = get_estimator(name, b)
            assert spec.unbiased and spec.distributions == (dist,) and spec.reference and spec.doc


def _hand_arm_disarm(theta: np.ndarray, u: np.ndarray, g) -> tuple[np.ndarray, np.ndarray]:
    """Loops over replicates and samples; f evaluated jointly on the D-vector (paper's notation)."""
    R, L, D = u.shape
    p = special.expit(theta)
    arm, dis = np.zeros((R, L, D)), np.zeros((R, L, D))
    for r in range(R):
        for li in range(L):
            uu = u[r, li]
            b = (uu < p).astype(float)
            bt = (1 - uu < p).astype(float)  # antithetic: 1[1 − u < σ(θ)]
            f_b, f_bt = g(b).sum(), g(bt).sum()
            for d in range(D):
                arm[r, li, d] = (f_bt - f_b) * (uu[d] - 0.5)
                sign = (-1.0) ** bt[d] * float(b[d] != bt[d])
                dis[r, li, d] = 0.5 * (f_b - f_bt) * sign * special.expit(abs(theta[d]))
    return arm.mean(1), dis.mean(1)


@pytest.mark.parametrize("logits", [[0.7], [-1.0, 0.0, 2.0]], ids=["D1", "D3"])
def test_per_sample_formulas(logits: list[float]) -> None:
    D, R, L, seed, k = len(logits), 4, 6, 7, 0.2
    problem = ProblemSpec("bernoulli", "quadratic", D, {"logits": logits}, {"k": k}).build()
    u = _uniform(np.random.default_rng(seed), (R, L, D))
    arm, dis = _hand_arm_disarm(np.array(logits), u, lambda b: (b - k) ** 2)
    for backend in BACKENDS:
        for name, hand in (("arm", arm), ("disarm", dis)):
            out = _run(name, backend, problem, L, R, seed)
            np.testing.assert_allclose(out, hand, rtol=1e-12, atol=1e-15, err_msg=f"{name} {backend} seed={seed}")


def test_arsm_per_sample_formula() -> None:
    """ARSM by hand: π ~ Dir(1) from the same uniforms, every (k, j) swap applied to all sites."""
    logits, D, K, R, L, seed = [0.5, -0.5, 1.0], 2, 3, 3, 4, 8
    problem = ProblemSpec("categorical", "categorical_target", D, {"logits": logits}).build()
    th, t = np.broadcast_to(np.array(logits), (D, K)), problem.op["target"]
    E = -np.log(_uniform(np.random.default_rng(seed), (R, L, D, K)))
    hand = np.zeros((R, L, D, K))
    for r in range(R):
        for li in range(L):
            pi = E[r, li] / E[r, li].sum(-1, keepdims=True)
            F = np.zeros((K, K))
            for k in range(K):
                for j in range(K):
                    sw = pi.copy()
                    sw[:, [k, j]] = pi[:, [j, k]]
                    z = np.eye(K)[np.argmin(np.log(sw) - th, axis=-1)]
                    F[k, j] = ((z - t) ** 2).sum()
            for d in range(D):
                for k in range(K):
                    hand[r, li, d, k] = sum((F[k, j] - F[:, j].mean()) * (1 / K - pi[d, j]) for j in range(K))
    for backend in BACKENDS:
        out = _run("arsm", backend, problem, L, R, seed)
        np.testing.assert_allclose(out, hand.mean(1), rtol=1e-10, atol=1e-14, err_msg=f"arsm {backend} seed={seed}")


def exact_toy_variances(p: float, t: float = TOY_T) -> dict[str, tuple[float, float]]:
    """(mean, variance) of the single-sample estimators on f(b) = (b − t)², D = 1, by enumeration.

    ARM: ĝ = Δ(u − ½) on the region where b̃ = 1, b = 0 and −Δ(u − ½) where b = 1, b̃ = 0 (Δ = f(1) − f(0));
    both regions are intervals of length min(p, 1−p) at the ends of (0, 1), so
    E[ĝ²] = 2Δ² ∫_{|p−½|}^{½} w² dw = (2/3)Δ²(1/8 − |p − ½|³).
    DisARM: ĝ = ½Δ σ(|θ|) on both regions (total probability 2 min(p, 1−p)), 0 elsewhere.
    """
    f1, f0 = (1 - t) ** 2, t**2
    delta, mean = f1 - f0, p * (1 - p) * (f1 - f0)
    sf2 = p * (1 - p) ** 2 * f1**2 + (1 - p) * p**2 * f0**2
    arm2 = (2 / 3) * delta**2 * (1 / 8 - abs(p - 0.5) ** 3)
    dis2 = 2 * min(p, 1 - p) * (0.5 * delta * max(p, 1 - p)) ** 2
    return {n: (mean, m2 - mean**2) for n, m2 in (("score_function", sf2), ("arm", arm2), ("disarm", dis2))}


def test_disarm_variance_below_arm_exactly() -> None:
    for p in np.linspace(0.01, 0.99, 99):
        v = exact_toy_variances(float(p))
        assert v["disarm"][1] <= v["arm"][1] * (1 + 1e-12), f"p={p}: {v}"


def _var_z(G: np.ndarray, exact_var: float) -> tuple[float, float, float]:
    """z of the sample variance against exact_var, SE from the fourth central moment."""
    d = G - G.mean()
    s2, m4 = float(d.var(ddof=1)), float((d**4).mean())
    se = math.sqrt(max(m4 - s2 * s2, 0.0) / G.size)
    return (s2 - exact_var) / se, s2, se


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_variances_on_toy(backend: str) -> None:
    problem = ProblemSpec("bernoulli", "bernoulli_toy", 1, {"probs": TOY_P}).build()
    exact = exact_toy_variances(TOY_P)
    assert math.isclose(exact["arm"][0], problem.exact.grads["logits"][0], rel_tol=1e-12)
    R, seed = 200_000 if backend == "numpy" else 50_000, 51
    measured = {}
    for i, (name, (mean, var)) in enumerate(exact.items()):
        G = draw(get_estimator(name, backend), problem, L=1, R=R, seed=seed + i)["logits"][:, 0]
        z, s2, se = _var_z(G, var)
        assert abs(z) < Z_VAR, (
            f"{name} {backend}: Var {s2:.6g} ± {se:.2g} vs exact {var:.6g}, z={z:.2f} (seed={seed + i})"
        )
        zm = (G.mean() - mean) / (G.std(ddof=1) / math.sqrt(R))
        assert abs(zm) < Z_VAR, f"{name} {backend}: mean z={zm:.2f} (seed={seed + i})"
        measured[name] = (s2, se)
    (va, sa), (vd, sd) = measured["arm"], measured["disarm"]
    assert (va - vd) / math.hypot(sa, sd) > 3.0, f"{backend}: Var ARM {va} vs DisARM {vd} (seed={seed})"
