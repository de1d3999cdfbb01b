"""Calling one estimator implementation directly: on fixed NumPy-sourced noise, or through the validation helpers.

The per-estimator tests reach the harness only through this module, so a move of the harness modules touches
one file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.backends import get_backend
from harness.measure.check import check_problem, draw
from harness.registry import get_estimator
from harness.registry.context import make_context

BACKENDS = ("numpy", "torch", "jax")

__all__ = ["BACKENDS", "check", "context", "estimates", "get_estimator", "run_fixed", "uniform"]


def uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """What ``NumpySourcedNoise.uniform`` draws (float64, open interval)."""
    return np.clip(rng.random(shape), np.finfo(np.float64).tiny, 1.0 - np.finfo(np.float64).epsneg)


def context(problem: Any, backend: str, L: int, R: int, seed: int, hyper: dict | None = None) -> Any:
    """A context on ``backend`` whose noise is drawn from ``numpy.random.default_rng(seed)`` (same on every backend)."""
    B = get_backend(backend)
    noise = B.numpy_noise(np.random.default_rng(seed), "float64", "cpu")
    return make_context(problem, B, L=L, R=R, noise=noise, hyper=dict(hyper or {}))


def run_fixed(
    name: str, backend: str, problem: Any, L: int, R: int, seed: int, hyper: dict | None = None
) -> dict[str, np.ndarray]:
    """One call of the implementation on fixed noise (defaults filled in), as float64 NumPy arrays."""
    spec = get_estimator(name, backend)
    ctx = context(problem, backend, L, R, seed, {**spec.defaults(), **(hyper or {})})
    return {k: np.asarray(ctx.B.to_numpy(v), np.float64) for k, v in spec.fn(ctx).items()}


def estimates(
    name: str, backend: str, problem: Any, L: int, R: int, seed: int, hyper: dict | None = None
) -> dict[str, np.ndarray]:
    """R replicate estimates through the runner (the backend's own RNG), float64 NumPy arrays."""
    return draw(get_estimator(name, backend), problem, L=L, R=R, seed=seed, hyper=hyper)


def check(name: str, backend: str, problem: Any, **kw: Any) -> Any:
    """``harness.measure.check.check_problem`` (Bonferroni t-test with a power check) for one implementation."""
    return check_problem(get_estimator(name, backend), problem, **kw)
