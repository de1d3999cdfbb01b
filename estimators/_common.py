"""Small helpers shared by estimator families (no estimator logic lives here)."""

from __future__ import annotations

from typing import Any

AUTODIFF = ("torch", "jax")


def bcast(w: Any, like: Any) -> Any:
    """Append singleton axes to a [R, L] weight so it broadcasts against ``like`` [R, L, ...]."""
    return w.reshape(tuple(w.shape) + (1,) * (like.ndim - w.ndim))
