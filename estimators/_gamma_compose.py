r"""Shared plumbing of the gamma-noise estimators (RSVI, GRG): one Gamma(α, 1) transform per shape parameter,
composed into gamma (G/β), beta (G₁/(G₁+G₀)) or dirichlet (G/ΣG), with a noise-density correction term.

A :class:`GammaPath` says how one standard gamma G is written as a function of its shape α and noise ν
whose density :math:`\pi(\nu;\alpha)` may depend on α:
``draw`` the noise, ``numpy`` the value with :math:`\partial_\alpha G` and :math:`\partial_\alpha\log\pi`,
``autodiff`` the value (differentiable in α) with :math:`\log\pi`.  The estimators are then

.. math::
    \hat g = \frac1L\sum_l \nabla_z f(z_l)^\top \partial_\theta z_l
        + [\text{correction}]\, f(z_l)\,\partial_\theta \log\pi(\nu_l;\theta),

written out in NumPy and differentiated as :math:`f(z(\theta)) + \mathrm{sg}[f(z)]\sum\log\pi` on PyTorch/JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimators._common import bcast

# gamma-shaped parameters of each distribution, in the order their noise is drawn
SHAPES = {"gamma": ("concentration",), "beta": ("concentration1", "concentration0"), "dirichlet": ("concentration",)}


@dataclass(frozen=True)
class GammaPath:
    draw: Callable[[Any, Any], dict]  # (ctx, shape param [*pshape] unbatched) -> noise dict for [R, L, *event]
    numpy: Callable[[np.ndarray, dict, dict], tuple]  # (α aligned, noise, hyper) -> (G, ∂αG, ∂α log π)
    autodiff: Callable[[Any, Any, dict, dict], tuple]  # (B, α aligned, noise, hyper) -> (G(α), log π(ν; α))


def draw_all(ctx: Any, path: GammaPath) -> list[dict]:
    return [path.draw(ctx, ctx.params[k]) for k in SHAPES[ctx.dist.name]]


def compose(B: Any, name: str, Pa: dict, Gs: list[Any]) -> Any:
    """z from the standard gammas: G/β (gamma), G₁/(G₁+G₀) (beta), G/ΣG (dirichlet)."""
    if name == "gamma":
        return Gs[0] / Pa["rate"]
    if name == "beta":
        return Gs[0] / (Gs[0] + Gs[1])
    return Gs[0] / B.sum(Gs[0], -1)[..., None]


def estimate_numpy(ctx: Any, path: GammaPath, correction: bool) -> dict[str, np.ndarray]:
    """Per sample f'(z)ᵀ ∂z/∂θ (+ f(z) ∂θ log π with ``correction``), chain rule written out, mean over L."""
    name = ctx.dist.name
    Pa = ctx.dist.align(ctx.batched())
    gam = [path.numpy(Pa[k], nz, ctx.hyper) for k, nz in zip(SHAPES[name], draw_all(ctx, path))]
    z = compose(ctx.B, name, Pa, [g[0] for g in gam])
    fz, fp = ctx.f_and_grad(z) if correction else (None, ctx.f_grad(z))
    if name == "gamma":
        rate = Pa["rate"]
        out = {"concentration": fp * gam[0][1] / rate, "rate": fp * (-z / rate)}
    elif name == "beta":
        (g1, d1, _), (g0, d0, _) = gam
        s2 = (g1 + g0) ** 2
        out = {"concentration1": fp * g0 / s2 * d1, "concentration0": -fp * g1 / s2 * d0}
    else:  # ∂f/∂G_k = (f'_k − Σ_j z_j f'_j) / ΣG
        g, dg, _ = gam[0]
        out = {"concentration": (fp - (z * fp).sum(-1, keepdims=True)) / g.sum(-1, keepdims=True) * dg}
    if correction:
        for k, (_, _, score) in zip(SHAPES[name], gam):
            out[k] = out[k] + bcast(fz, score) * score
    return {k: v.mean(1) for k, v in out.items()}


def estimate_autodiff(ctx: Any, path: GammaPath, correction: bool) -> dict[str, Any]:
    """Autodiff of mean_L f(z(θ; ν)) + sg[f(z)] Σ_coords log π(ν; α) (second term with ``correction``)."""
    B, name = ctx.B, ctx.dist.name
    noise = draw_all(ctx, path)

    def surrogate(P: dict) -> Any:
        Pa = ctx.dist.align(P)
        gam = [path.autodiff(B, Pa[k], nz, ctx.hyper) for k, nz in zip(SHAPES[name], noise)]
        fz = ctx.f(compose(B, name, Pa, [g[0] for g in gam]))
        if not correction:
            return fz.mean(1)
        R, L = fz.shape[0], fz.shape[1]
        lp = sum(B.sum(g[1].reshape(R, L, -1), -1) for g in gam)
        return (fz + B.stop_gradient(fz) * lp).mean(1)

    return ctx.grad(surrogate)
