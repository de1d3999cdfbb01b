"""Test-only estimators that misbehave on purpose (slow, self-killing), for the Dask executor tests.

Nothing is registered on import: the tests call :func:`register` (and unregister afterwards), and Dask workers
preload this module, whose :func:`dask_setup` hook registers them in each worker.  Each start of a cell's
estimate leaves a mark file ``<name>-<pid>-<ns>`` in ``$STOCHGRAD_TEST_MARKS`` (when set), so a test can find
the worker process running a cell and kill it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from harness.registry import Hyper, estimator_names, register_estimator, unregister

NAMES = ("test_sleep", "test_crash")


def _mark(name: str) -> None:
    where = os.environ.get("STOCHGRAD_TEST_MARKS")
    if where:
        Path(where, f"{name}-{os.getpid()}-{time.time_ns()}").write_text(str(os.getpid()))


def _pathwise(ctx: Any) -> dict:
    eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))
    gz = ctx.f_grad(ctx.params["loc"] + ctx.params["scale"] * eps)
    return {"loc": gz.mean(1), "scale": (gz * eps).mean(1)}


def _slow(ctx: Any) -> dict:
    """Pathwise, after sleeping ``seconds`` in every estimate call with R > 1 (timing calls stay fast)."""
    if ctx.R > 1:
        _mark("test_sleep")
        time.sleep(ctx.hyper["seconds"])
    return _pathwise(ctx)


def _crash(ctx: Any) -> dict:
    """Kills its own process (as a segfault or the OOM killer would)."""
    _mark("test_crash")
    os.kill(os.getpid(), signal.SIGKILL)
    return _pathwise(ctx)  # never reached


def register() -> None:
    if "test_sleep" in estimator_names():
        return
    slow = register_estimator(
        "test_sleep",
        distributions=["normal"],
        unbiased=True,
        requires=["differentiable"],
        hyperparameters={"seconds": Hyper(0.5, low=0.0)},
        reference="test only",
    )
    slow.implementation("numpy")(_slow)
    crash = register_estimator("test_crash", distributions=["normal"], unbiased=True, reference="test only")
    crash.implementation("numpy")(_crash)


def unregister_all() -> None:
    for name in NAMES:
        unregister(name)


def dask_setup(worker: Any) -> None:
    """Dask preload hook: register the test estimators in this worker process."""
    register()
