"""Shared test helpers for workloads and training: a fresh checkpoint cache, a small VAE unit, jax's compile log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.targets import workload_truth as truth
from harness.training import TRAIN_KEYS, checkpoints, unit_key


def fresh_checkpoint_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Body of a module-scoped fixture: ``$STOCHGRAD_CACHE`` in a fresh directory, in-memory checkpoints and truths
    forgotten before and after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STOCHGRAD_CACHE", str(tmp_path_factory.mktemp("ckpt")))
        checkpoints.forget_memory()
        truth._MEMO.clear()
        yield
    checkpoints.forget_memory()
    truth._MEMO.clear()


def vae_unit(tmp: Path | None = None, **kw: Any) -> dict:
    """One training unit of the small Bernoulli VAE (4 latents, DisARM, 60 steps on torch); ``kw`` overrides any
    key; with ``tmp`` the unit keeps its state file there."""
    from harness.workloads import get_workload

    wl = get_workload(kw.get("workload", "vae_bernoulli"))
    u = {k: v for k, v in TRAIN_KEYS.items() if k not in ("estimators", "seeds", "backends", "devices", "hyper")}
    u.update(
        suite="test",
        workload=wl.name,
        config=kw.get("config") or wl.resolve({"latent_dim": 4}),
        estimator="disarm",
        hyper={},
        seed=0,
        lr=3e-3,
        backend="torch",
        device="cpu",
        steps=60,
        log_every=20,
        batch_size=16,
        val_size=100,
        test_size=100,
        test_samples=10,
    )
    u.update(kw)
    if tmp is not None:
        u["state_path"] = str(tmp / f"{unit_key(u)}.npz")
    return u


class CompileLog(logging.Handler):
    """Collects jax's ``jax_log_compiles`` records ("Compiling <fn> ...", one per XLA compilation) of functions whose
    name contains ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.name_part = name
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("Compiling ") and self.name_part in msg:
            self.lines.append(msg)


@contextlib.contextmanager
def compile_log(name: str) -> Iterator[CompileLog]:
    """jax's compile log switched on, collected by a :class:`CompileLog` for ``name``, and restored afterwards."""
    import jax

    handler = CompileLog(name)
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


class Killed(BaseException):
    """Stands in for a kill: a BaseException, so nothing in the loop catches it."""


def kill_at(unit: dict, step: int) -> None:
    """``train_unit(unit)``, killed when the trainer reaches ``step`` (what it saved before stays on disk)."""
    from harness.training.loop import Trainer, train_unit

    real_step = Trainer.step

    def dying(self: Trainer) -> Any:
        if self.t == step:
            raise Killed
        return real_step(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "step", dying)
        with pytest.raises(Killed):
            train_unit(unit)


def assert_same_curves(a: dict, b: dict) -> None:
    """Two units' curves are equal bit for bit, apart from their timing columns."""
    import pandas as pd

    drop = [c for c in a["rows"][0] if "time" in c]
    pd.testing.assert_frame_equal(
        pd.DataFrame(a["rows"]).drop(columns=drop), pd.DataFrame(b["rows"]).drop(columns=drop), check_exact=True
    )
