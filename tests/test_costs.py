"""Cost counted through the Context: counts per L-sample estimate equal hand-derived formulas, agree across
NumPy/PyTorch/JAX (eager and jitted, one chunk or many), reach the rows, and a plugin is counted without declaring.

Hand derivations (rule in docs/notes/cost.md: a point's value = 1 f; a gradient at a point = 1 f + 1 grad):
pathwise L·(1 f + 1 grad); REINFORCE and RLOO L f; ARM/DisARM 2L f (f(b) and f(b̃)); ARSM L·K² f (f at every swap
(k, j) of each sample, diagonal included); measure-valued, separable: per parameter and sign L·Kc points of the
per-site shortcut (normal: loc, scale with Kc = 1: 4L), any f: 2·Kc·L·D (Bernoulli Kc = 1: 2·L·D); enumeration of a
separable f: the K support values, whatever L and D; REBAR: f(b), and c at z (gradient) and z̃ (value and gradient):
3L f + 2L grad; RELAX adds its surrogate r_ρ at z and z̃: 2L aux; VIMCO: K f; score_function_delta (Taylor at μ):
f_site + f_grad + f_hess_diag at one point (1 + 2 + 3 = 3 f + 3 grad) plus L f.  A workload estimate is the sum of
its examples' estimator calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness import registry
from harness.backends import get_backend
from harness.measure.cells import Cell
from harness.measure.cost import count_evals, fit_formula, measure_formula
from harness.measure.runner import COUNT_KEYS, MeasureRequest, estimate, run_cell
from harness.problems import ProblemSpec
from harness.registry import Context, get_estimator, register_estimator
from harness.targets.workload import WorkloadSpec
from harness.training import checkpoints

BACKENDS = ("numpy", "torch", "jax")


def normal(D: int) -> Any:
    return ProblemSpec("normal", "quadratic", D, {"loc": 0.5, "scale": 1.5}, {"k": 0.0}).build()


def bernoulli(D: int) -> Any:
    return ProblemSpec("bernoulli", "quadratic", D, {"logits": 0.3}, {"k": 0.2}).build()


def categorical(D: int, K: int) -> Any:
    return ProblemSpec("categorical", "categorical_target", D, {"logits": 0.2}, {}, {"categories": K}).build()


# (estimator, problem builder, L, D, K, expected (f, grad, aux) per estimate)
CASES = [
    ("pathwise", normal, 4, 3, 0, lambda L, D, K: (L, L, 0)),
    ("score_function", normal, 4, 3, 0, lambda L, D, K: (L, 0, 0)),
    ("score_function_rloo", bernoulli, 5, 2, 0, lambda L, D, K: (L, 0, 0)),
    ("arm", bernoulli, 3, 4, 0, lambda L, D, K: (2 * L, 0, 0)),
    ("disarm", bernoulli, 4, 2, 0, lambda L, D, K: (2 * L, 0, 0)),
    ("arsm", categorical, 3, 2, 3, lambda L, D, K: (L * K * K, 0, 0)),
    ("arsm", categorical, 2, 3, 4, lambda L, D, K: (L * K * K, 0, 0)),
    ("measure_valued", normal, 3, 2, 0, lambda L, D, K: (4 * L, 0, 0)),
    ("measure_valued", bernoulli, 5, 3, 0, lambda L, D, K: (2 * L, 0, 0)),
    ("enumeration", bernoulli, 7, 3, 0, lambda L, D, K: (2, 0, 0)),
    ("enumeration", categorical, 3, 2, 4, lambda L, D, K: (K, 0, 0)),
    ("rebar", bernoulli, 3, 2, 0, lambda L, D, K: (3 * L, 2 * L, 0)),
    ("relax", bernoulli, 4, 3, 0, lambda L, D, K: (3 * L, 2 * L, 2 * L)),
    ("relax", categorical, 2, 2, 3, lambda L, D, K: (3 * L, 2 * L, 2 * L)),
    ("score_function_delta", normal, 5, 2, 0, lambda L, D, K: (3 + L, 3, 0)),
]


def _problem(builder: Any, D: int, K: int) -> Any:
    return builder(D, K) if K else builder(D)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("est", "builder", "L", "D", "K", "formula"), CASES, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES]
)
def test_counts_equal_hand_derived_formulas(
    est: str, builder: Any, L: int, D: int, K: int, formula: Any, backend: str
) -> None:
    got = count_evals(get_estimator(est, backend), _problem(builder, D, K), L, R=3, jit=backend == "jax")
    want = dict(zip(COUNT_KEYS, map(float, formula(L, D, K)), strict=True))
    assert got == want, f"{est} [{backend}] L={L} D={D} K={K}: counted {got}, hand-derived {want}"


def test_measure_valued_any_objective_counts_every_site() -> None:
    """The general path (f not used as separable): f at z with site d replaced, for every d: 2·L·D (Bernoulli)."""
    fn = get_estimator("measure_valued", "numpy").fn  # one array-op implementation on every backend
    for backend in BACKENDS:
        for L, D in ((2, 3), (3, 5)):
            ctx = Context.for_problem(
                bernoulli(D), backend, L=L, R=4, noise=get_backend(backend).noise(1, "float64", "cpu")
            )
            fn(ctx, separable=False)
            assert ctx.counts.snapshot() == (2.0 * L * D, 0.0, 0.0), (backend, L, D, ctx.counts)


@pytest.mark.parametrize("backend", ("torch", "jax"))
def test_vimco_counts_k_evaluations(backend: str) -> None:
    """VIMCO (a multi-sample bound's estimator, measured in training) evaluates f once per sample: K f."""
    fn = get_estimator("vimco", backend).fn
    for K in (2, 5):
        ctx = Context.for_problem(normal(3), backend, L=K, R=4, noise=get_backend(backend).noise(2, "float64", "cpu"))
        fn(ctx)
        assert ctx.counts.snapshot() == (float(K), 0.0, 0.0), (K, ctx.counts)


@pytest.mark.parametrize("est", ["pathwise", "relax", "arsm"])
def test_jit_eager_and_chunks_agree(est: str) -> None:
    """Counts are per estimate: the same whether JAX traces once (jit) or runs eagerly, and across many chunks."""
    prob = categorical(2, 3) if est in ("relax", "arsm") else normal(3)
    spec = get_estimator(est, "jax")
    runs = [
        estimate(MeasureRequest(spec, prob, L=3, R=40, jit=jit, max_memory=mem))[1]
        for jit in (True, False)
        for mem in (1, 2**28)
    ]
    assert any(i["n_chunks"] > 1 for i in runs) and any(i["n_chunks"] == 1 for i in runs)
    first = {k: runs[0][k] for k in COUNT_KEYS}
    for info in runs[1:]:
        assert {k: info[k] for k in COUNT_KEYS} == first


def test_counts_reach_the_rows() -> None:
    out = run_cell(
        Cell(
            "disarm",
            "numpy",
            "cpu",
            ProblemSpec("bernoulli", "quadratic", 3, {"logits": 0.3}, {"k": 0.2}),
            4,
            200,
            seed=1,
            timing=False,
        )
    )
    assert out.status == "ok", out.message
    for row in out.rows:
        assert (row["f_evals"], row["grad_evals"], row["aux_evals"], row["evals"]) == (8.0, 0.0, 0.0, 8.0)
        assert row["variance_per_eval"] == pytest.approx(row["variance"] * 8.0)
        assert row["variance_per_eval_ci_low"] == pytest.approx(row["variance_ci_low"] * 8.0)
        assert row["variance_per_eval_ci_high"] == pytest.approx(row["variance_ci_high"] * 8.0)


@pytest.fixture
def _cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path))
    checkpoints.forget_memory()
    yield
    checkpoints.forget_memory()


@pytest.mark.usefixtures("_cache")
@pytest.mark.parametrize(
    ("est", "per_example"), [("disarm", lambda L, D: 2 * L), ("measure_valued", lambda L, D: 2 * L * D)]
)
def test_workload_cell_sums_its_examples(est: str, per_example: Any) -> None:
    """A workload estimate makes one estimator call per example: its cost is the sum (η and encoder rows alike)."""
    L, D, N = 3, 4, 2
    ws = WorkloadSpec("vae_bernoulli", {"latent_dim": D, "hidden": 8}, checkpoint=0, batch_size=N)
    out = run_cell(Cell(est, "numpy", "cpu", ws, n_samples=L, n_replicates=50, seed=1, timing=False))
    assert out.status == "ok", out.message
    assert {r["param"] for r in out.rows} >= {"eta", "encoder"}
    for r in out.rows:
        assert (r["f_evals"], r["grad_evals"]) == (float(N * per_example(L, D)), 0.0), r["param"]


def test_a_plugin_is_counted_without_declaring_anything() -> None:
    """A plugin calling ctx.f twice at L points and differentiating f once through ctx.grad: 3L f + L grad."""
    est = register_estimator("cost_plugin_test", distributions=("normal",), unbiased=True, reference="test")

    def numpy_impl(ctx: Any) -> dict[str, Any]:
        z = ctx.sample()
        a, b = ctx.f(z), ctx.f(z + 1.0)
        g = ctx.f_grad(z)
        return {k: np.zeros((ctx.R, *v.shape)) + (a + b).mean() * 0 + g.mean() * 0 for k, v in ctx.params.items()}

    def autodiff_impl(ctx: Any) -> dict[str, Any]:
        z = ctx.sample()
        a, b = ctx.f(z), ctx.f(z + 1.0)
        eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))
        grads = ctx.grad(lambda Q: ctx.f(Q["loc"][:, None] + Q["scale"][:, None] * eps).mean(1))
        return {k: v * 0 + (a + b).mean() * 0 for k, v in grads.items()}

    est.implementation("numpy")(numpy_impl)
    est.implementation("torch", "jax")(autodiff_impl)
    try:
        for backend in BACKENDS:
            got = count_evals(get_estimator("cost_plugin_test", backend), normal(2), 4, jit=backend == "jax")
            assert got == {"f_evals": 12.0, "grad_evals": 4.0, "aux_evals": 0.0}, (backend, got)
    finally:
        registry.unregister("cost_plugin_test")


def test_fitted_formulas() -> None:
    """The catalog's measured formulas: fitted exactly where the count is of the form, a support size recognized,
    refused otherwise."""
    pts = [(L, D, 0, 2.0 * L * D + 3) for L in (2, 3, 5) for D in (1, 2, 3)]
    assert fit_formula(pts, categorical=False) == "3 + 2·L·D"
    grid = [(L, D) for L in (2, 3, 5) for D in (1, 2, 3, 4)]
    assert fit_formula([(L, D, 0, 2.0**D) for L, D in grid], categorical=False) == "2^D"
    assert fit_formula([(L, D, 0, float(min(L, 2**D))) for L, D in grid], categorical=False) == "min(L, 2^D)"
    assert fit_formula([(L, D, 0, 3.0**D) for L, D in grid], categorical=False) is None
    mv = measure_formula("disarm")
    assert mv.formulas == {"f_evals": "2·L", "grad_evals": "0", "aux_evals": "0"} and mv.evals == "2·L"
    rx = measure_formula("relax")
    assert rx.formulas == {"f_evals": "3·L", "grad_evals": "2·L", "aux_evals": "2·L"} and rx.evals == "5·L"
