"""JAX without recompiles: one compilation per (estimator, shapes, dtype, device) on workload targets.

Compilations are counted through jax's own machinery: ``jax.monitoring``'s backend-compile events (what
:meth:`harness.backends.jax_backend.JaxBackend.compilations` tallies) and, independently, the ``jax_log_compiles``
log lines ("Compiling ..." records of the ``jax`` loggers).  Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("jax")

from harness.backends import get_backend
from harness.measure.cells import Cell
from harness.measure.runner import run_cell
from harness.targets.workload import WorkloadSpec
from tests.support.training import CompileLog, fresh_checkpoint_cache
from tests.support.training import compile_log as jax_compile_log

CFG = {"latent_dim": 4, "hidden": 8}  # 2^4 configurations: cheap exact truth


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield from fresh_checkpoint_cache(tmp_path_factory)


@pytest.fixture
def compile_log() -> Iterator[CompileLog]:
    with jax_compile_log("inner") as log:
        yield log


def _cell(est: str, checkpoint: int, batch_seed: int = 0) -> Cell:
    ws = WorkloadSpec("vae_bernoulli", CFG, checkpoint=checkpoint, batch_size=3, batch_seed=batch_seed)
    return Cell(est, "jax", "cpu", ws, n_samples=2, n_replicates=64, seed=5, timing=True, dtype="float32")


@pytest.mark.parametrize("est", ["disarm", "relax", "rodeo", "score_function_oracle"])
def test_second_example_and_checkpoint_do_not_recompile(est: str, compile_log: CompileLog) -> None:
    """The first cell compiles the estimator's call once per replicate count (its 3 examples share it); a second checkpoint
    and another batch compile nothing.  REBAR/RELAX and RODEO fit per example (their constants are arguments); the
    oracle's exact E[f], different on every example, is an argument too (it was baked in, one compilation per example)."""
    B = get_backend("jax")
    n0, _ = B.compilations()
    first = run_cell(_cell(est, 0))
    assert first.status == "ok", first.message
    n1, _ = B.compilations()
    logged1 = len(compile_log.lines)
    assert n1 - n0 >= 1, "the first cell compiled nothing: the counter is not listening"
    # one compilation per replicate count: the estimate's chunk (R = 64) and the timing's call (R = 1)
    assert logged1 == 2, f"{est}: expected two compilations of the estimator call, got {compile_log.lines}"
    for other in (_cell(est, 20), _cell(est, 20, batch_seed=1)):
        out = run_cell(other)
        assert out.status == "ok", out.message
    n2, _ = B.compilations()
    assert len(compile_log.lines) == logged1, f"{est}: recompiled: {compile_log.lines[logged1:]}"
    # the chain rule's own jitted helpers are compiled once per shape too: nothing new for the later cells
    assert n2 == n1, f"{est}: {n2 - n1} XLA compilations for a second checkpoint / batch"
    cols = {r["param"]: r for r in first.rows}
    assert cols["eta"]["compile_time_s"] > 0
    later = run_cell(_cell(est, 0, batch_seed=2))
    assert all(r["compile_time_s"] == 0.0 for r in later.rows)


@pytest.mark.parametrize("est", ["relax", "score_function_oracle"])
def test_fitted_constants_follow_the_target(est: str) -> None:
    """A shared compilation reads each example's own fit (or exact value): the estimates of one example are the same
    whether its call was compiled for it or for another example (identical seeds, identical numbers)."""
    from harness.backends import jax_backend

    assert run_cell(_cell(est, 0, batch_seed=4)).status == "ok"  # the call is compiled on another batch
    a = run_cell(_cell(est, 0, batch_seed=3))
    jax_backend._JITTED.clear()  # now compiled on this batch's first example
    b = run_cell(_cell(est, 0, batch_seed=3))
    assert a.status == b.status == "ok"
    for ra, rb in zip(a.rows, b.rows, strict=True):
        np.testing.assert_array_equal(ra["grad_mean"], rb["grad_mean"])
        np.testing.assert_array_equal(ra["variance"], rb["variance"])


def test_every_jax_estimator_shares_its_compilation_across_targets() -> None:
    """Registry-driven: every JAX implementation that applies to a workload traces reading only its problem's
    structure (``STRUCTURE``), so its compilation is shared by the examples and checkpoints; one that read the
    target's identity or values would be compiled per target (the guard), which this test would name."""
    import jax

    from harness.backends.jax_backend import STRUCTURE, JaxNoise, WatchedProblem
    from harness.registry import EXACT_VALUE, applies, implementations, make_context

    ws = WorkloadSpec("vae_bernoulli", CFG, checkpoint=0, batch_size=3, example=1)
    problem = ws.build()
    B = get_backend("jax")
    specific = {}
    checked = 0
    for spec in implementations():
        if spec.backend != "jax" or not applies(spec, ws.traits())[0]:
            continue
        hyper = spec.defaults()
        L = max(2, spec.min_samples)
        template = make_context(problem, B, L=L, R=2, noise=None, hyper=hyper, dtype="float32")
        fitted = dict(spec.constants(template)) if spec.constants is not None else {}
        if spec.oracle:  # as the runner does: the exact value is an argument
            fitted[EXACT_VALUE] = problem.exact.value
        template = template.with_(fitted={k: B.asarray(np.asarray(v), "float32", "cpu") for k, v in fitted.items()})
        reads: set[str] = set()

        def inner(params: dict, key, spec=spec, template=template, reads=reads) -> dict:
            ctx = template.with_(problem=WatchedProblem(problem, reads), params=params)
            return spec.fn(ctx.with_(noise=JaxNoise(key, "float32", B)))

        jax.make_jaxpr(inner)(template.params, jax.random.PRNGKey(0))
        checked += 1
        if reads:
            specific[spec.name] = sorted(reads)
    assert checked >= 10, f"only {checked} JAX estimators apply to the workload"
    assert not specific, f"read beyond {sorted(STRUCTURE)} while tracing (compiled per target): {specific}"


def test_an_implementation_reading_its_target_is_compiled_per_target(compile_log: CompileLog) -> None:
    """The guard: a plugin that reads its target inside the implementation (here: returns the target's own η as a
    constant, as an in-implementation fit would bake its fit) gets its own target's numbers on every example, because
    a compilation that read a target's values is not shared; so each example compiles its own call."""
    import stochgrad as sg
    from harness import registry
    from harness.measure.runner import MeasureRequest, estimate_target

    est = sg.register_estimator("probe_reads_target", distributions=["bernoulli"], unbiased=False)

    @est.implementation("jax")
    def probe(ctx):  # noqa: ANN001, ANN202
        eta = np.asarray(ctx.problem.params_np["logits"], np.float32)  # a value of this target, read while tracing
        return {"logits": ctx.B.xp.broadcast_to(ctx.B.xp.asarray(eta), (ctx.R, *eta.shape))}

    try:
        problem = _cell("disarm", 0, batch_seed=7).target.build()
        spec = registry.get_estimator("probe_reads_target", "jax")
        req = MeasureRequest(spec, problem, L=1, R=2, seed=0, dtype="float32")
        G, _ = estimate_target(req, problem)
        np.testing.assert_allclose(G["logits"][0], problem.params_np["logits"].astype(np.float32), rtol=1e-6)
        assert len(compile_log.lines) == problem.n, compile_log.lines
    finally:
        registry.unregister("probe_reads_target")
