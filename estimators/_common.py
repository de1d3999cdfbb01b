"""Small helpers shared by estimator families (no estimator logic lives here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

AUTODIFF = ("torch", "jax")


def bcast(w: Any, like: Any) -> Any:
    """Append singleton axes to a [R, L] weight so it broadcasts against ``like`` [R, L, ...]."""
    return w.reshape(tuple(w.shape) + (1,) * (like.ndim - w.ndim))


def loo_mean(a: Any, axis: int = 1) -> Any:
    """Leave-one-out means along ``axis``: entry k is the mean of the other K − 1 entries (K >= 2)."""
    K = a.shape[axis]
    return (a.sum(axis, keepdims=True) - a) / (K - 1)


def f_and_grad(ctx: Any, z: Any) -> tuple[Any, Any]:
    """(f(z) [R, L], ∂f/∂z elementwise [R, L, *event]) at points z, without gradient attached to either.

    NumPy: ``ctx.f_and_grad`` (f and the analytic ∂f/∂z per point);
    PyTorch/JAX: one forward pass of ``ctx.f`` over the points and one backward pass (vector-Jacobian product), so
    f is evaluated once per point on every backend.  Counted 1 f + 1 grad per point on every backend.
    """
    B = ctx.B
    if B.name == "numpy":
        return ctx.f_and_grad(z)
    if B.name == "jax":
        import jax

        with ctx.differentiating():
            fz, vjp = jax.vjp(ctx.f, B.stop_gradient(z))
        (gz,) = vjp(B.xp.ones_like(fz))
        return B.stop_gradient(fz), B.stop_gradient(gz)
    import torch

    with torch.enable_grad(), ctx.differentiating():
        leaf = z.detach().clone().requires_grad_(True)
        fz = ctx.f(leaf)
        (gz,) = torch.autograd.grad(fz.sum(), leaf)
    return fz.detach(), gz.detach()


def scan(B: Any, step: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any, reverse: bool = False) -> Any:
    """``lax.scan`` semantics on every backend: ``step(carry, x) -> (carry, y)`` over the leading axis of ``xs``
    (a tuple of arrays; ``y`` a tuple of arrays too); returns (final carry, tuple of stacked ys).  JAX compiles one step (``jax.lax.scan``),
    NumPy and PyTorch loop in Python; a loop over sites or steps, never over replicates."""
    if B.name == "jax":
        import jax

        return jax.lax.scan(step, carry, xs, reverse=reverse)
    n = int(xs[0].shape[0])
    ys: list[Any] = [None] * n
    for i in reversed(range(n)) if reverse else range(n):
        carry, ys[i] = step(carry, tuple(x[i] for x in xs))
    return carry, tuple(B.stack([y[j] for y in ys], 0) for j in range(len(ys[0])))


def take_along(B: Any, a: Any, idx: Any) -> Any:
    """``a[..., idx]`` along the last axis, row by row (``numpy.take_along_axis`` on every backend)."""
    if B.name == "torch":
        import torch

        return torch.take_along_dim(a, idx, dim=-1)
    return B.xp.take_along_axis(a, idx, axis=-1)


def index_array(B: Any, values: Any, device: str) -> Any:
    """An integer array of ``values`` (NumPy) on the backend and device (``B.asarray`` makes floats)."""
    if B.name == "torch":
        import torch

        return torch.as_tensor(values, device=device)
    return B.xp.asarray(values)
