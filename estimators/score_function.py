r"""Score-function (REINFORCE / likelihood-ratio) gradients and their baselines.

.. math::
    \nabla_\theta \mathbb{E}[f(z)] = \mathbb{E}[(f(z) - b)\, \nabla_\theta \log p(z;\theta)]

``score_function``: b = 0.  ``score_function_rloo``: leave-one-out baseline
:math:`b_l = \frac{1}{L-1}\sum_{j\ne l} f(z_j)`, i.e. :math:`\frac{1}{L-1}\sum_l (f_l - \bar f)\nabla\log p(z_l)`,
still unbiased, needs L >= 2.  Requires only that f can be evaluated and log p differentiated in θ; applies
to every distribution.  References: Williams (1992), "Simple statistical gradient-following algorithms";
Kool, van Hoof & Welling (2019), "Buy 4 REINFORCE samples, get a baseline for free!".

NumPy uses each distribution's analytic score ``dist.score_np``; PyTorch and JAX differentiate the
surrogate mean_L(stopgrad(w_l) log p(z_l; θ)) with autodiff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from estimators._common import AUTODIFF, bcast, register_many
from harness.registry import register_estimator

ALL = ("*",)
REF_SF = "Williams 1992 (Machine Learning 8:229-256); Mohamed et al. 2020 JMLR 21(132) sec. 4"
REF_RLOO = "Kool, van Hoof & Welling 2019 (ICLR workshop DeepRLStructPred); Salimans & Knowles 2014"


def weights_plain(ctx: Any, fz: Any) -> Any:
    return fz


def weights_rloo(ctx: Any, fz: Any) -> Any:
    L = fz.shape[1]
    return (fz - fz.mean(1, keepdims=True)) * (L / (L - 1))


def score_numpy(ctx: Any, weights: Callable[[Any, Any], Any]) -> dict[str, np.ndarray]:
    P = ctx.batched()
    z = ctx.sample(P)
    w = weights(ctx, ctx.f(z))
    scores = ctx.dist.score_np(z, ctx.dist.align(P))
    return {k: (bcast(w, s) * s).mean(1) for k, s in scores.items()}


def score_autodiff(ctx: Any, weights: Callable[[Any, Any], Any]) -> dict[str, Any]:
    P = ctx.batched()
    z = ctx.sample(P)
    w = ctx.B.stop_gradient(weights(ctx, ctx.f(z)))
    return ctx.B.grad_batched(lambda Q: (w * ctx.log_prob(z, Q)).mean(1), P)


def _register(name: str, weights: Callable, reference: str, min_samples: int = 1) -> None:
    caps = dict(distributions=ALL, unbiased=True, reference=reference, min_samples=min_samples, family="score_function")

    def numpy_impl(ctx: Any) -> dict[str, np.ndarray]:
        return score_numpy(ctx, weights)

    def autodiff_impl(ctx: Any) -> dict[str, Any]:
        return score_autodiff(ctx, weights)

    numpy_impl.__doc__ = autodiff_impl.__doc__ = f"{name}: weights {weights.__name__} (see module docstring)"
    numpy_impl.__qualname__ = f"{name}_numpy"
    autodiff_impl.__qualname__ = f"{name}_autodiff"
    register_estimator(name, "numpy", **caps)(numpy_impl)
    register_many(name, AUTODIFF, **caps)(autodiff_impl)


_register("score_function", weights_plain, REF_SF)
_register("score_function_rloo", weights_rloo, REF_RLOO, min_samples=2)
