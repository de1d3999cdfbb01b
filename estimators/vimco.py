r"""VIMCO (Mnih & Rezende 2016): the K-sample bound's gradient for discrete latents, leave-one-out baselines.

Target (as :mod:`estimators.dreg`): the gradient of the negative K-sample bound, K = L,
:math:`-\nabla_\eta \mathbb E[\log \frac1K\sum_k w_k]`, :math:`\log w_k = -f(z_k;\eta)` — declared with
``requires = ("multi_sample_bound",)`` so it is only expanded where an objective provides that bound.

.. math::
    \hat g = -\sum_k \big(\hat{\mathcal L} - \hat{\mathcal L}_{-k}\big)\nabla_\eta\log q(z_k;\eta)
             + \sum_k \tilde w_k\, \nabla_\eta \log q(z_k;\eta),

with :math:`\hat{\mathcal L} = \log\frac1K\sum_j w_j`, the leave-one-out baseline
:math:`\hat{\mathcal L}_{-k}` = the same with :math:`\log w_k` replaced by the mean of the other K − 1 log-weights
(the geometric-mean variant of the paper), and :math:`\tilde w = \mathrm{softmax}(\log w)`; the second term is
:math:`-\sum_k \tilde w_k \nabla_\eta \log w_k` at fixed :math:`z_k`.  Needs K ≥ 2.  PyTorch and JAX
(autodiff of the surrogate :math:`\sum_k \mathrm{sg}[\tilde w_k - \hat{\mathcal L} + \hat{\mathcal L}_{-k}]\log q(z_k)`).
"""

from __future__ import annotations

from typing import Any

from estimators._common import AUTODIFF
from stochgrad import register_estimator

REF_VIMCO = "Mnih & Rezende 2016 (ICML, arXiv:1602.06725), variational inference for Monte Carlo objectives"


def learning_signals(B: Any, lw: Any) -> tuple[Any, Any]:
    """(L̂ − L̂₋ₖ [R, K], softmax weights w̃ [R, K]) from log-weights [R, K] (K >= 2)."""
    K = lw.shape[1]
    total = B.logsumexp(lw, 1)  # [R]
    others = (lw.sum(1)[:, None] - lw) / (K - 1)  # [R, K]: mean of the other log-weights
    # L̂₋ₖ: lw with entry k replaced by others[k] (a loop over the K samples, K small)
    loo = B.stack([B.logsumexp(B.concat([lw[:, :k], others[:, k : k + 1], lw[:, k + 1 :]], 1), 1) for k in range(K)], 1)
    return total[:, None] - loo, B.softmax(lw, 1)


def vimco_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of Σ_k sg[w̃_k − (L̂ − L̂₋ₖ)] log q(z_k; η) (z_k drawn without gradient)."""
    B = ctx.B
    P = ctx.batched()
    z = ctx.sample(P)  # [R, K, *event]
    lw = B.stop_gradient(-ctx.f(z))
    signal, wt = learning_signals(B, lw)
    coef = B.stop_gradient(wt - signal)

    def surrogate(Q: dict) -> Any:
        return (coef * _log_q_each(ctx, z, Q)).sum(1)

    return ctx.grad(surrogate, P)


def _log_q_each(ctx: Any, z: Any, Q: dict) -> Any:
    """log q(z_k; Q) [R, K] (the joint density over the event of each sample)."""
    return ctx.log_prob(z, Q)


def _register() -> None:
    est = register_estimator(
        "vimco",
        distributions=("bernoulli", "categorical"),
        unbiased=True,
        requires=("multi_sample_bound",),
        min_samples=2,
        family="multi_sample",
        reference=REF_VIMCO,
    )
    est.implementation(*AUTODIFF)(vimco_autodiff)


_register()
