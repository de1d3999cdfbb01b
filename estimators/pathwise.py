r"""Pathwise (reparameterization) gradients.

.. math::
    z = g(\theta, \varepsilon),\ \varepsilon \sim p(\varepsilon):\quad
    \nabla_\theta \mathbb{E}[f(z)] \approx \frac1L \sum_{l=1}^L \nabla_z f(z_l)\, \partial_\theta g(\theta, \varepsilon_l)

Requires f differentiable and a differentiable sampling path ``g``.  Reference: Kingma & Welling (2014),
"Auto-Encoding Variational Bayes"; Rezende et al. (2014); review: Mohamed et al. (2020), JMLR 21(132), §5.

The reparameterizations live in :data:`RSAMPLE` (one entry per distribution, written against ``ctx.B`` so
PyTorch and JAX share it); NumPy writes the chain rule out analytically in :data:`NUMPY_GRADS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from estimators._common import AUTODIFF, register_many
from harness.registry import register_estimator

REFERENCE = "Kingma & Welling 2014 (arXiv:1312.6114); Mohamed et al. 2020 JMLR 21(132) sec. 5"


def _normal_rsample(ctx: Any, P: dict, base: dict) -> Any:
    return P["loc"][:, None] + P["scale"][:, None] * base["eps"]


def _normal_base(ctx: Any) -> dict:
    return {"eps": ctx.noise.normal((ctx.R, ctx.L, ctx.dim))}


# distribution -> (draw base noise, differentiable map from batched params + noise to z)
RSAMPLE: dict[str, tuple[Callable, Callable]] = {
    "normal": (_normal_base, _normal_rsample),
}


def _numpy_normal(ctx: Any) -> dict[str, np.ndarray]:
    """z = μ + σε:  ∂μ = mean_L f'(z),  ∂σ = mean_L f'(z) ε."""
    eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))
    z = ctx.params["loc"] + ctx.params["scale"] * eps
    gz = ctx.problem.objective.grad_np(z, ctx.op)
    return {"loc": gz.mean(1), "scale": (gz * eps).mean(1)}


NUMPY_GRADS: dict[str, Callable] = {"normal": _numpy_normal}


def pathwise_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """Pathwise gradient with the chain rule written out (NumPy, float64)."""
    return NUMPY_GRADS[ctx.dist.name](ctx)


def pathwise_autodiff(ctx: Any) -> dict[str, Any]:
    """Pathwise gradient by autodiff through z = g(θ, ε) (PyTorch autograd / jax.grad)."""
    draw, rsample = RSAMPLE[ctx.dist.name]
    base = draw(ctx)

    def surrogate(P: dict) -> Any:
        return ctx.f(rsample(ctx, P, base)).mean(1)

    return ctx.B.grad_batched(surrogate, ctx.batched())


def _register() -> None:
    caps = dict(unbiased=True, reference=REFERENCE, requires=("differentiable",), family="pathwise")
    register_estimator("pathwise", "numpy", distributions=tuple(NUMPY_GRADS), **caps)(pathwise_numpy)
    register_many("pathwise", AUTODIFF, distributions=tuple(RSAMPLE), **caps)(pathwise_autodiff)


_register()
