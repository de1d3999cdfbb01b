"""The JAX training step compiled as a whole: one compilation per (estimator, shapes, dtype, device), the eager
step's numbers, and an eager fallback with its reason for a step that cannot be traced.

Compilations are counted through jax's own machinery, as in tests/test_jax_compiles.py: ``jax.monitoring``'s
backend-compile events (:meth:`harness.backends.jax_backend.JaxBackend.compilations`) and the ``jax_log_compiles``
records naming the compiled step.  Nothing here reads a clock.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

from harness.backends import get_backend, jax_backend
from harness.registry import get_declaration
from harness.targets import workload_truth as truth
from harness.training import checkpoints, jax_engine, loop
from harness.training.loop import Trainer, train_unit
from harness.training.spec import TRAIN_KEYS

STEP = "jitted_train_step"  # the name jax logs for the compiled training step


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STOCHGRAD_CACHE", str(tmp_path_factory.mktemp("ckpt")))
        checkpoints.forget_memory()
        truth._MEMO.clear()
        yield
    checkpoints.forget_memory()
    truth._MEMO.clear()


class CompileLog(logging.Handler):
    """Collects jax's ``jax_log_compiles`` records of the training step ("Compiling jitted_train_step ...")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("Compiling ") and STEP in msg:
            self.lines.append(msg)


@pytest.fixture
def compile_log() -> Iterator[CompileLog]:
    import jax

    handler = CompileLog()
    logger = logging.getLogger("jax")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    jax.config.update("jax_log_compiles", True)
    try:
        yield handler
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _unit(**kw) -> dict:
    from harness.workloads import get_workload

    wl = get_workload("vae_bernoulli")
    u = {k: v for k, v in TRAIN_KEYS.items() if k not in ("estimators", "seeds", "backends", "devices", "hyper")}
    u.update(
        suite="test",
        workload=wl.name,
        config=wl.resolve({"latent_dim": 4}),
        estimator="disarm",
        hyper={},
        seed=0,
        lr=3e-3,
        backend="jax",
        device="cpu",
        steps=30,
        log_every=10,
        batch_size=16,
        n_samples=2,
        refit_every=4,
        val_size=50,
        test_size=50,
        test_samples=10,
    )
    u.update(kw)
    return u


def _forget_fits(estimator: str) -> None:
    state = get_declaration(estimator).state
    if state is not None:
        state.forget({})


@pytest.mark.parametrize("estimator", ["disarm", "relax"])
def test_second_step_batch_refit_and_seed_do_not_recompile(estimator: str, compile_log: CompileLog) -> None:
    """The first step compiles the whole step once; the later steps (a new minibatch and new noise each), RELAX's
    refits every 4 steps (new fitted constants: arguments, not constants of the trace) and a second seed's unit (new
    weights) compile nothing."""
    jax_backend._JITTED.clear()
    jax_engine._UNTRACEABLE.clear()
    _forget_fits(estimator)
    B = get_backend("jax")
    tr = Trainer(_unit(estimator=estimator))
    tr.step()
    n1, _ = B.compilations()
    assert len(compile_log.lines) == 1, f"{estimator}: expected one compilation of the step, got {compile_log.lines}"
    assert tr.engine.compiled and tr.engine.eager_reason == ""
    fits0 = get_declaration(estimator).state.export({"training": tr.key}) if estimator == "relax" else []
    for _ in range(9):  # steps 1..9: refits at steps 4 and 8
        tr.step()
    assert B.compilations()[0] == n1, f"{estimator}: {B.compilations()[0] - n1} XLA compilations after step 1"
    assert len(compile_log.lines) == 1, f"{estimator}: recompiled: {compile_log.lines[1:]}"
    if estimator == "relax":  # the refits happened and changed the constants the compiled step was given
        assert tr.problem is not None and tr.problem.spec.ident["refit"] == 8
        fits8 = get_declaration(estimator).state.export({"training": tr.key})
        assert [f["target"]["refit"] for f in fits0] == [0] and [f["target"]["refit"] for f in fits8] == [8]
        assert fits0[0]["fit"] != fits8[0]["fit"], "the refit did not change the fitted constants"
    other = Trainer(_unit(estimator=estimator, seed=1))
    other.step()
    other.step()
    assert B.compilations()[0] == n1 and len(compile_log.lines) == 1, "a second seed's unit recompiled the step"


@pytest.mark.parametrize("estimator", ["disarm", "relax", "vimco", "score_function_rloo"])
def test_compiled_step_gives_the_eager_steps_numbers(estimator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled step and the eager one (the same function run op by op) draw the same host noise: curves, test
    bound and the estimator's counted evaluations agree to float rounding (float64; RELAX's constants are arrays in one
    and Python floats in the other, so its last bits may differ)."""
    jax_engine._UNTRACEABLE.clear()
    got = {}
    for jit in (True, False):
        _forget_fits(estimator)
        monkeypatch.setattr(
            loop, "engine_class", lambda backend, jit=jit: functools.partial(jax_engine.JaxEngine, jit=jit)
        )
        out = train_unit(_unit(estimator=estimator))
        assert out["status"] == "ok", out["message"]
        assert out["summary"]["step_compiled"] is jit
        got[jit] = out
    cols = ["train_objective", "train_objective_avg", "val_elbo", "grad_var", "grad_mean_sq"]
    a, b = (pd.DataFrame(got[j]["rows"])[cols].to_numpy() for j in (True, False))
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=estimator)
    np.testing.assert_allclose(got[True]["summary"]["test_bound"], got[False]["summary"]["test_bound"], rtol=1e-10)
    # the Context's evaluation counts: counted once when traced, every call eagerly; the same per step
    counts = {}
    for jit in (True, False):
        _forget_fits(estimator)
        tr = Trainer(_unit(estimator=estimator))
        tr.engine = jax_engine.JaxEngine(
            tr.setup, lambda tr=tr: tr.wl.init_params(tr.cfg, np.random.default_rng(0)), jit
        )
        tr.step()
        tr.step()
        counts[jit] = tr.engine.last_counts
    assert counts[True] == counts[False] and counts[True][0] > 0, counts


def test_a_step_that_cannot_be_traced_runs_eagerly_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    """An estimator converting a traced value to a Python number cannot be compiled inside the step: the unit trains
    eagerly (the same numbers as the estimator it wraps, compiled), logs a warning and reports the reason."""
    import stochgrad as sg
    from harness import registry

    jax_engine._UNTRACEABLE.clear()
    disarm = registry.get_estimator("disarm", "jax")
    est = sg.register_estimator("host_float_train_test", distributions=["bernoulli"], unbiased=True)

    @est.implementation("jax")
    def host_float(ctx):  # noqa: ANN001, ANN202
        g = disarm.fn(ctx)
        if float(g["logits"].sum()) != float(g["logits"].sum()):  # a Python number from a traced value
            raise AssertionError("NaN gradient")
        return g

    try:
        with caplog.at_level(logging.WARNING, logger="harness.training.jax_engine"):
            out = train_unit(_unit(estimator="host_float_train_test"))
        assert out["status"] == "ok", out["message"]
        s = out["summary"]
        assert s["step_compiled"] is False
        assert "cannot be traced" in s["step_eager_reason"] and "ConcretizationTypeError" in s["step_eager_reason"]
        assert any("runs eagerly" in r.getMessage() for r in caplog.records)
        ref = train_unit(_unit(estimator="disarm"))
        assert ref["summary"]["step_compiled"] is True
        np.testing.assert_allclose(s["test_bound"], ref["summary"]["test_bound"], rtol=1e-10)
    finally:
        registry.unregister("host_float_train_test")
        jax_engine._UNTRACEABLE.clear()
