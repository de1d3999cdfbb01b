"""Pathwise estimator on normal, mvn, exponential, student_t and truncated_normal.

1. Exact per-sample formulas with fixed noise: the NumPy chain rule vs central differences of
   f(g(θ, ε)) with the same ε (student_t df: G(α) = F⁻¹(F(G₀; α₀); α), the inverse-CDF coupling that the
   implicit gamma derivative differentiates).
2. PyTorch and JAX (autodiff through RSAMPLE) vs NumPy on identical noise (``B.numpy_noise``).
3. Unbiasedness: harness.measure.check.check_problem on every shipped example on all three backends.
4. Exact variance: normal(0.5, 1.5), f = z², one sample: Var[∂loc] = 4σ² = 9, Var[∂scale] = 4(μ² + 2σ²) = 19,
   z-test on the sample variance with its fourth-moment standard error.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from scipy import special

from estimators.pathwise import NUMPY_GRADS, RSAMPLE
from harness.backends import get_backend
from harness.measure.check import check_problem
from harness.problems import ProblemSpec, example_problems
from harness.registry import get_estimator
from harness.registry.context import make_context

DISTS = tuple(NUMPY_GRADS)
NP = get_backend("numpy")
PROBLEMS = [p for d in DISTS for p in example_problems(d)]


def _seed(key: str) -> int:
    return zlib.crc32(key.encode()) % 2**31


def _run(backend: str, problem, seed: int, L: int, R: int) -> dict[str, np.ndarray]:
    """One pathwise call on ``backend`` with NumPy-sourced noise from ``default_rng(seed)``."""
    B = get_backend(backend)
    ctx = make_context(problem, B, L=L, R=R, noise=B.numpy_noise(np.random.default_rng(seed), "float64", "cpu"))
    out = get_estimator("pathwise", backend).fn(ctx)
    return {k: np.asarray(B.to_numpy(v), np.float64) for k, v in out.items()}


def _fd_numpy(problem, seed: int, L: int, R: int, h: float = 1e-6) -> dict[str, np.ndarray]:
    """Central differences of mean_L f(g(θ, ε)) per replicate, ε fixed (drawn like the estimator draws it)."""
    ctx = make_context(problem, NP, L=L, R=R, noise=NP.numpy_noise(np.random.default_rng(seed), "float64", "cpu"))
    draw, rsample = RSAMPLE[problem.dist.name]
    base = draw(ctx)
    P0 = ctx.batched()
    if problem.dist.name == "student_t":  # the exact inverse-CDF coupling instead of the linearized surrogate
        u = special.gammainc(problem.params_np["df"] / 2, base["G"])

        def path(P):
            G = special.gammaincinv(P["df"][:, None] / 2, u)
            return P["loc"][:, None] + P["scale"][:, None] * base["eps"] * np.sqrt(P["df"][:, None] / (2 * G))
    else:

        def path(P):
            return rsample(ctx, P, base)

    out = {}
    for k in problem.param_names:
        g = np.zeros_like(P0[k])
        for idx in np.ndindex(*P0[k].shape[1:]):
            step = h * max(1.0, abs(float(P0[k][(0, *idx)])))
            up, dn = ({**P0, k: P0[k].copy()} for _ in range(2))
            up[k][(slice(None), *idx)] += step
            dn[k][(slice(None), *idx)] -= step
            g[(slice(None), *idx)] = (ctx.f(path(up)).mean(1) - ctx.f(path(dn)).mean(1)) / (2 * step)
        out[k] = g
    return out


@pytest.mark.parametrize("spec", PROBLEMS, ids=[p.label() for p in PROBLEMS])
def test_numpy_formula_matches_finite_differences(spec: ProblemSpec) -> None:
    problem = spec.build()
    seed = _seed("fd-" + spec.label())
    got = _run("numpy", problem, seed, L=3, R=4)
    fd = _fd_numpy(problem, seed, L=3, R=4)
    assert set(got) == set(problem.param_names)
    for k in problem.param_names:
        np.testing.assert_allclose(got[k], fd[k], rtol=2e-6, atol=2e-7, err_msg=f"{spec.label()} d{k} seed={seed}")
    if problem.dist.name == "mvn":
        assert np.all(np.triu(got["scale_tril"], 1) == 0)


SAME_NOISE = [example_problems(d)[1] for d in DISTS]


@pytest.mark.parametrize("spec", SAME_NOISE, ids=[p.label() for p in SAME_NOISE])
def test_autodiff_matches_numpy_on_identical_noise(spec: ProblemSpec) -> None:
    problem = spec.build()
    seed = _seed("xb-" + spec.label())
    ref = _run("numpy", problem, seed, L=5, R=6)
    for b in ("torch", "jax"):
        got = _run(b, problem, seed, L=5, R=6)
        assert set(got) == set(problem.param_names), f"{b}: {sorted(got)}"
        for k in problem.param_names:
            # torch's implicit gamma derivative (student_t df) is an approximation: per sample up to ~1e-3
            # relative (median 1e-5), so compare on the scale of the whole array there
            atol = 2e-3 * np.abs(ref[k]).max() if (b, k) == ("torch", "df") else 1e-11
            rtol = 0.0 if (b, k) == ("torch", "df") else 1e-9
            np.testing.assert_allclose(got[k], ref[k], rtol=rtol, atol=atol, err_msg=f"{b} d{k} seed={seed}")


# JAX cases jit-compile one program per problem (jax.random.gamma and its derivative are costly to compile)
UNBIASED = [
    pytest.param(b, p, id=f"{b}-{p.label()}", marks=[pytest.mark.slow] if b == "jax" else [])
    for b in ("numpy", "torch", "jax")
    for p in PROBLEMS
]


@pytest.mark.parametrize(("backend", "spec"), UNBIASED)
def test_unbiased_on_examples(backend: str, spec: ProblemSpec) -> None:
    seed = _seed(f"ub-{backend}-{spec.label()}")
    n_tests = sum(sum(v.size for v in p.build().exact.grads.values()) for p in PROBLEMS)
    res = check_problem(
        get_estimator("pathwise", backend),
        spec.build(),
        L=4,
        R=10000,
        max_R=80000,
        seed=seed,
        n_tests=n_tests,
        jit=backend == "jax",
    )
    assert res.verdict == "pass", res.line()


def test_exact_variance_gaussian_quadratic() -> None:
    """Single-sample Var[∂loc] = 4σ² = 9 and Var[∂scale] = 4(μ² + 2σ²) = 19 for f = z², N(0.5, 1.5²)."""
    problem = ProblemSpec("normal", "quadratic", 1, {"loc": 0.5, "scale": 1.5}, {"k": 0.0}).build()
    mu, s = 0.5, 1.5
    exact = {"loc": 4 * s**2, "scale": 4 * (mu**2 + 2 * s**2)}
    assert exact == {"loc": 9.0, "scale": 19.0}
    R = 200000
    for b in ("numpy", "torch", "jax"):
        seed = _seed(f"var-{b}")
        G = _run(b, problem, seed, L=1, R=R)
        for k, v in exact.items():
            x = G[k][:, 0]
            c = x - x.mean()
            var = c @ c / (R - 1)
            se = math.sqrt((np.mean(c**4) - var**2) / R)  # SE of the sample variance (fourth moment)
            z = (var - v) / se
            assert abs(z) < 4.0, f"{b} Var[{k}] = {var:.4f} ± {se:.4f}, exact {v}: z = {z:.2f} (seed={seed})"
            assert 4.0 * se < 0.05 * v, f"{b}: underpowered variance test (se={se:.3g})"
