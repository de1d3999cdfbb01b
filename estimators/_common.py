"""Small helpers shared by estimator families (no estimator logic lives here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.registry import register_estimator

AUTODIFF = ("torch", "jax")


def bcast(w: Any, like: Any) -> Any:
    """Append singleton axes to a [R, L] weight so it broadcasts against ``like`` [R, L, ...]."""
    return w.reshape(tuple(w.shape) + (1,) * (like.ndim - w.ndim))


def register_many(name: str, backends: tuple[str, ...], **caps: Any) -> Callable[[Callable], Callable]:
    """Register one implementation (written against ``ctx.B``) on several backends."""

    def deco(fn: Callable) -> Callable:
        for b in backends:
            register_estimator(name, b, **caps)(fn)
        return fn

    return deco
