r"""Multi-sample (importance-weighted) bound gradients for reparameterizable latents: ``iwae_pathwise`` and ``dreg``.

Target.  With log-weights :math:`\log w_k = \log p(x, z_k) - \log q(z_k;\eta) = -f(z_k;\eta)` for K = L
samples :math:`z_k = \mu + \sigma\varepsilon_k`, both estimate the gradient of the *negative* K-sample bound

.. math::
    -\nabla_\eta \mathcal L_K,\qquad \mathcal L_K = \mathbb E\Big[\log \tfrac1K \sum_k w_k\Big],

not :math:`\nabla_\eta\mathbb E[f(z)]` — they declare ``requires = ("multi_sample_bound",)``, so they are only
expanded where an objective provides that bound (training runs, :mod:`harness.training`), never on the shipped
toy problems or on workload cells whose truth is the single-sample ELBO gradient.  ``ctx.f`` holds η fixed
inside log q (see :mod:`harness.workloads.base`), so ∂f/∂z is the "stop-gradient on q's parameters" slope.

* ``iwae_pathwise`` (Burda, Grosse & Salakhutdinov 2016): the total derivative,
  :math:`\hat g = -\sum_k \tilde w_k \big(\tfrac{\partial \log w_k}{\partial z_k}\tfrac{\partial z_k}{\partial\eta}
  - \partial_\eta \log q(z_k;\eta)\big)`, :math:`\tilde w = \mathrm{softmax}(\log w)`.  Its signal-to-noise ratio
  for the encoder falls like :math:`1/\sqrt K` (Rainforth et al. 2018).
* ``dreg`` (Tucker, Lawson, Gu & Maddison 2019, "Doubly reparameterized gradient estimators"):
  :math:`\hat g = -\sum_k \tilde w_k^2\,\tfrac{\partial \log w_k}{\partial z_k}\tfrac{\partial z_k}{\partial\eta}`,
  unbiased for the same target (the score terms are rewritten by a second reparameterization).

Both are surrogates differentiated by the backend (PyTorch, JAX); K = 1 gives the sticking-the-landing
pathwise ELBO gradient.
"""

from __future__ import annotations

import math
from typing import Any

from estimators._common import AUTODIFF
from stochgrad import register_estimator

REF_IWAE = "Burda, Grosse & Salakhutdinov 2016 (ICLR, arXiv:1509.00519), importance weighted autoencoders"
REF_DREG = "Tucker, Lawson, Gu & Maddison 2019 (ICLR, arXiv:1810.04152), doubly reparameterized gradients"


def _logw(ctx: Any, Q: dict, eps: Any) -> Any:
    """log w_k [R, K] at z = loc + scale·ε, differentiable through z (η fixed inside log q)."""
    z = Q["loc"][:, None] + Q["scale"][:, None] * eps
    return -ctx.f(z), z


def iwae_pathwise_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of −[logsumexp_k log w_k − log K], log w_k with q's parameters live (total derivative)."""
    B = ctx.B
    eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))

    def surrogate(Q: dict) -> Any:
        lw, z = _logw(ctx, Q, eps)
        zs = B.stop_gradient(z)
        lq = ctx.log_prob(zs, Q)  # ∂η log q(z; η) at fixed z; value removed again below
        lw = lw - lq + B.stop_gradient(lq)
        return -(B.logsumexp(lw, 1) - math.log(ctx.L))

    return ctx.grad(surrogate)


def dreg_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of −Σ_k sg(w̃_k²) log w_k with z reparameterized and q's parameters stopped."""
    B = ctx.B
    eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))

    def surrogate(Q: dict) -> Any:
        lw, _ = _logw(ctx, Q, eps)
        wt = B.stop_gradient(B.softmax(lw, 1))
        return -(wt * wt * lw).sum(1)

    return ctx.grad(surrogate)


def _register() -> None:
    base = dict(distributions=("normal",), unbiased=True, requires=("multi_sample_bound",), family="multi_sample")
    for name, ref, fn in (("iwae_pathwise", REF_IWAE, iwae_pathwise_autodiff), ("dreg", REF_DREG, dreg_autodiff)):
        est = register_estimator(name, reference=ref, **base)
        est.implementation(*AUTODIFF)(fn)


_register()
