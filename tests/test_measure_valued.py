"""measure_valued: unbiasedness, closed-form variances, coupling, cross-backend equality on identical noise.

Fast by default (NumPy statistics + identical-noise agreement on PyTorch/JAX); the full check_problem
sweep on PyTorch and JAX is marked slow.  Every stochastic assertion prints its seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from estimators.measure_valued import PARTS, gamma_rate_parts, measure_valued, site_values
from harness.backends import get_backend
from harness.measure.check import applicable_problems, check_problem, draw, z_critical
from harness.problems import Objective, ProblemSpec, example_problems
from harness.registry import get_estimator
from harness.registry.context import make_context

ALPHA = 1e-3
BACKENDS = ("numpy", "torch", "jax")
PROBLEMS = applicable_problems(get_estimator("measure_valued", "numpy"))
N_COORDS = sum(sum(int(np.prod(v.shape)) for v in p.build().exact.grads.values()) for p in PROBLEMS)


def fixed(problem, backend: str, *, L: int, R: int, seed: int, hyper=None, separable=None) -> dict[str, np.ndarray]:
    """One call on identical NumPy-sourced noise (same draws on every backend); JAX is jitted with the
    parameters traced and the noise baked in as constants (op-by-op JAX compiles every op: 10x slower)."""
    B = get_backend(backend)
    noise = B.numpy_noise(np.random.default_rng(seed), "float64", "cpu")
    ctx = make_context(problem, B, L=L, R=R, noise=noise, hyper={"coupling": True, **(hyper or {})})
    if backend == "jax":
        import jax

        out = jax.jit(lambda params: measure_valued(ctx.with_(params=params), separable=separable))(ctx.params)
    else:
        out = measure_valued(ctx, separable=separable)
    return {k: np.asarray(B.to_numpy(out[k]), np.float64) for k in problem.param_names}


def var_and_se(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate variance of the replicates [R, C] and its standard error."""
    dev2 = (g - g.mean(0)) ** 2
    return g.var(0, ddof=1), dev2.std(0, ddof=1) / math.sqrt(g.shape[0])


def test_declares_exactly_the_fully_covered_distributions() -> None:
    spec = get_estimator("measure_valued", "numpy")
    assert set(spec.distributions) == set(PARTS) == {"normal", "exponential", "bernoulli", "categorical"}
    assert "gamma" not in spec.distributions  # concentration has no standard weak derivative
    assert spec.unbiased and spec.hyperparameters["coupling"].default is True and not spec.requires
    for b in BACKENDS:
        assert get_estimator("measure_valued", b).fn is measure_valued


@pytest.mark.parametrize("coupling", [True, False])
@pytest.mark.parametrize("prob", PROBLEMS, ids=[p.label() for p in PROBLEMS])
def test_unbiased_numpy(prob, coupling: bool) -> None:
    res = check_problem(
        get_estimator("measure_valued", "numpy"),
        prob.build(),
        L=4,
        R=20000,
        max_R=200000,
        seed=11,
        alpha=ALPHA,
        n_tests=2 * N_COORDS,
        hyper={"coupling": coupling},
    )
    assert res.verdict == "pass", res.line()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("prob", PROBLEMS, ids=[p.label() for p in PROBLEMS])
def test_unbiased_autodiff_backends(prob, backend: str) -> None:
    spec = get_estimator("measure_valued", backend)
    res = check_problem(spec, prob.build(), L=4, R=20000, max_R=200000, seed=12, alpha=ALPHA, n_tests=N_COORDS)
    assert res.verdict == "pass", res.line()


ONE_PER_DIST = list({p.distribution: p for p in reversed(PROBLEMS)}.values())


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_identical_noise_equals_numpy(backend: str) -> None:
    """The single array-op implementation gives the same numbers on every backend for the same draws
    (JAX: one problem per distribution, compilation dominates its time)."""
    for i, prob in enumerate(PROBLEMS if backend == "torch" else ONE_PER_DIST):
        problem = prob.build()
        for coupling in (True, False):
            seed = 100 + i
            ref = fixed(problem, "numpy", L=5, R=3, seed=seed, hyper={"coupling": coupling})
            got = fixed(problem, backend, L=5, R=3, seed=seed, hyper={"coupling": coupling})
            for k in ref:
                msg = f"{prob.label()} {k} coupling={coupling} {seed=}"
                np.testing.assert_allclose(got[k], ref[k], rtol=1e-10, atol=1e-12, err_msg=msg)


def test_quick_unbiased_on_autodiff_backends() -> None:
    """One continuous and one discrete problem through the real runner on PyTorch and JAX (jit)."""
    picks = [p for p in PROBLEMS if p.label().startswith(("normal(loc=[0", "categorical(logits=[0,1,2]"))]
    assert len(picks) == 2
    for backend in ("torch", "jax"):
        for prob in picks:
            spec = get_estimator("measure_valued", backend)
            res = check_problem(spec, prob.build(), L=4, R=20000, seed=13, alpha=ALPHA, n_tests=8, jit=True)
            assert res.verdict == "pass", res.line()


def test_separable_shortcut_equals_general_path() -> None:
    """For separable f the shared sites cancel: per-site evaluation equals full re-evaluation of f."""
    for i, prob in enumerate(PROBLEMS):
        problem = prob.build()
        a = fixed(problem, "numpy", L=6, R=4, seed=7 + i, separable=True)
        b = fixed(problem, "numpy", L=6, R=4, seed=7 + i, separable=False)
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-9, atol=1e-12, err_msg=f"{prob.label()} {k}")


def test_non_separable_objective_unbiased() -> None:
    """f(z) = (Σ_d z_d)² on a normal: exact ∂loc = 2 Σμ, ∂scale = 2σ; exercises the D×D general path."""
    problem = ProblemSpec(
        "normal", "quadratic", dim=3, params={"loc": [0.5, -1.0, 0.2], "scale": [1.0, 0.5, 2.0]}
    ).build()
    problem.objective = Objective(
        name="sum_squared",
        fn=lambda B, z, op: z.sum(-1, keepdims=True) ** 2,
        params={},
        supports=frozenset({"real"}),
        separable=False,
    )
    mu, s = problem.params_np["loc"], problem.params_np["scale"]
    exact = {"loc": np.full(3, 2 * mu.sum()), "scale": 2 * s}
    seed, R = 21, 40000
    B = get_backend("numpy")
    ctx = make_context(problem, B, L=8, R=R, noise=B.noise(seed, "float64", "cpu"), hyper={"coupling": True})
    out = measure_valued(ctx)
    zc = z_critical(ALPHA, 6)
    for k, e in exact.items():
        se = out[k].std(0, ddof=1) / math.sqrt(R)
        assert np.all(np.abs(out[k].mean(0) - e) <= zc * se), f"{k}: {out[k].mean(0)} vs {e} ({seed=})"
        assert np.all(zc * se < 0.1 * np.abs(e)), f"{k}: underpowered ({seed=})"


def _gamma_rate_only(ctx) -> dict:
    P = ctx.batched()
    c, zp, zm = gamma_rate_parts(ctx, P["concentration"], P["rate"], bool(ctx.hyper["coupling"]))
    return {"rate": (c * (site_values(ctx, zp) - site_values(ctx, zm)).mean(1))[..., 0]}


@pytest.mark.parametrize("coupling", [True, False])
def test_gamma_rate_decomposition(coupling: bool) -> None:
    """∂β E_Gamma(α,β)[f] = (α/β)(E_Gamma(α,β)[f] − E_Gamma(α+1,β)[f]) on every gamma example (not declared)."""
    B, zc, seed, R = get_backend("numpy"), z_critical(ALPHA, 12), 31, 40000
    for prob in example_problems("gamma"):
        problem = prob.build()
        ctx = make_context(problem, B, L=4, R=R, noise=B.noise(seed, "float64", "cpu"), hyper={"coupling": coupling})
        g, e = _gamma_rate_only(ctx)["rate"], problem.exact.grads["rate"]
        se = g.std(0, ddof=1) / math.sqrt(R)
        assert np.all(np.abs(g.mean(0) - e) <= zc * se), f"{prob.label()}: {g.mean(0)} vs {e} ({seed=})"
        assert np.all(zc * se < 0.1 * np.abs(e) + 1e-3), f"{prob.label()}: underpowered ({seed=})"


# -- closed-form per-sample variances (L = 1 so the replicate variance is the per-sample variance) --------
W_VAR = (4 - math.pi) / 2  # Var of a Rayleigh(1) draw


@pytest.mark.parametrize(
    ("dist", "params", "objective", "op", "coupling", "exact_var"),
    [
        # normal loc, linear f = a z: c(f(z+) − f(z−)) = 2aW/√(2π) coupled, a(W1 + W2)/√(2π) independent
        ("normal", {"loc": 0.3, "scale": 1.7}, "linear", {"a": 1.5}, True, {"loc": 4 * 1.5**2 * W_VAR / (2 * math.pi)}),
        (
            "normal",
            {"loc": 0.3, "scale": 1.7},
            "linear",
            {"a": 1.5},
            False,
            {"loc": 2 * 1.5**2 * W_VAR / (2 * math.pi)},
        ),
        # normal scale, independent: a(M − ε'), Var = a²(E M² + E ε²) = 4a²
        ("normal", {"loc": 0.3, "scale": 1.7}, "linear", {"a": 1.5}, False, {"scale": 4 * 1.5**2}),
        # exponential rate, linear: coupled −aE/λ² (Var a²/λ⁴); independent a(E − G₂)/λ² (Var 3a²/λ⁴)
        ("exponential", {"rate": 1.3}, "linear", {"a": 0.7}, True, {"rate": 0.7**2 / 1.3**4}),
        ("exponential", {"rate": 1.3}, "linear", {"a": 0.7}, False, {"rate": 3 * 0.7**2 / 1.3**4}),
    ],
)
def test_closed_form_variance(dist, params, objective, op, coupling, exact_var) -> None:
    problem = ProblemSpec(dist, objective, dim=1, params=params, objective_params=op).build()
    seed, R = 41, 200000
    G = draw(get_estimator("measure_valued", "numpy"), problem, L=1, R=R, seed=seed, hyper={"coupling": coupling})
    for k, v in exact_var.items():
        var, se = var_and_se(G[k])
        assert abs(var[0] - v) <= 4.5 * se[0], (
            f"{dist} {k} coupling={coupling}: Var {var[0]:.5g} vs exact {v:.5g} ({seed=})"
        )


def test_discrete_closed_forms() -> None:
    """Bernoulli: zero variance and exact (= enumeration) for separable f.  Categorical: Var = p_k² Var g(z_d)."""
    prob = ProblemSpec("bernoulli", "bernoulli_toy", dim=2, params={"probs": [0.3, 0.8]}).build()
    g = fixed(prob, "numpy", L=3, R=5, seed=1)["logits"]
    np.testing.assert_allclose(g, np.broadcast_to(prob.exact.grads["logits"], g.shape), rtol=1e-12)

    prob = ProblemSpec("categorical", "categorical_target", dim=1, params={"logits": [0.5, -0.5, 1.0]}).build()
    seed, R = 43, 100000
    G = draw(get_estimator("measure_valued", "numpy"), prob, L=1, R=R, seed=seed)["logits"].reshape(R, -1)
    p = np.exp(prob.params_np["logits"][0])
    p /= p.sum()
    t = prob.op["target"]
    gvals = ((np.eye(3) - t) ** 2).sum(-1)  # g(e_j)
    var_g = p @ gvals**2 - (p @ gvals) ** 2
    var, se = var_and_se(G)
    for k in range(3):
        assert abs(var[k] - p[k] ** 2 * var_g) <= 4.5 * se[k], (
            f"category {k}: {var[k]} vs {p[k] ** 2 * var_g} ({seed=})"
        )


# -- coupling --------------------------------------------------------------------------------------
COUPLED_HELPS = [(p, k) for p in PROBLEMS if p.distribution in ("normal", "exponential") for k in p.build().param_names]


@pytest.mark.parametrize(("prob", "param"), COUPLED_HELPS, ids=[f"{p.label()}-{k}" for p, k in COUPLED_HELPS])
def test_coupling_reduces_variance(prob, param: str) -> None:
    """Common random numbers reduce the variance on smooth objectives -- except the normal loc under a
    linear f, where the mirrored coupling z± = μ ± σW exactly doubles it (closed form above)."""
    problem, seed, R = prob.build(), 51, 20000
    spec = get_estimator("measure_valued", "numpy")
    vc, sc = var_and_se(draw(spec, problem, L=4, R=R, seed=seed, hyper={"coupling": True})[param].reshape(R, -1))
    vi, si = var_and_se(draw(spec, problem, L=4, R=R, seed=seed + 1, hyper={"coupling": False})[param].reshape(R, -1))
    if problem.objective.name == "linear" and param == "loc":
        assert np.all(np.abs(vc - 2 * vi) <= 4 * np.sqrt(sc**2 + 4 * si**2)), f"{vc} vs 2 x {vi} ({seed=})"
        return
    margin = 4 * np.sqrt(sc**2 + si**2)
    assert np.all(vc + margin < vi), f"{prob.label()} {param}: coupled {vc} vs independent {vi} ({seed=})"
