r"""Antithetic, f-evaluation-only estimators for discrete latents: ARM, DisARM (Bernoulli), ARSM (categorical).

All three are unbiased and need nothing of f but evaluations at hard samples (no derivative, any f); the
distribution must be a product of independent Bernoulli(σ(θ_d)) or Categorical(softmax(θ_d)) sites.  One
formula serves NumPy, PyTorch and JAX (no autodiff is involved), written against ``ctx.B``.

``arm`` — Augment-REINFORCE-Merge (Yin & Zhou 2019), multivariate form with one shared uniform vector per
sample, :math:`u \sim U(0,1)^D`, :math:`b = \mathbf 1[u < \sigma(\theta)]`,
:math:`\tilde b = \mathbf 1[u > \sigma(-\theta)]` (the antithetic of b):

.. math::
    \hat g_d = \frac1L \sum_l \big(f(\tilde b_l) - f(b_l)\big)\,(u_{ld} - \tfrac12)

``disarm`` — ARM with u integrated out given (b, b̃) (Dong, Mnih & Tucker 2020), same b, b̃:

.. math::
    \hat g_d = \frac1L \sum_l \tfrac12\big(f(b_l) - f(\tilde b_l)\big)\,(b_{ld} - \tilde b_{ld})\,\sigma(|\theta_d|)

(the paper writes :math:`(-1)^{\tilde b_d}\mathbf 1[b_d \ne \tilde b_d]`, which equals :math:`b_d - \tilde b_d`).
Both cost 2L evaluations of f per call.  Rao-Blackwellization gives Var[DisARM] ≤ Var[ARM].

``arsm`` — Augment-REINFORCE-Swap-Merge (Yin, Yue & Zhou 2019), the published categorical extension, in its
multivariate form: per sample, :math:`\pi_d \sim \mathrm{Dir}(\mathbf 1_K)` per site (drawn as normalized
exponentials :math:`E = -\log u`), and for every pair (k, j) the pseudo action
:math:`z^{k\rightleftharpoons j}_d = \arg\min_i(\log \pi^{k\rightleftharpoons j}_{di} - \theta_{di})`, where
:math:`\pi^{k\rightleftharpoons j}` swaps entries k and j of every site's π (the same swap on all sites;
k = j gives the true sample).  With :math:`F_{kj} = f(z^{k\rightleftharpoons j})` and
:math:`\bar F_j = \frac1K\sum_m F_{mj}`:

.. math::
    \hat g_{dk} = \frac1L \sum_l \sum_{j=1}^K \big(F_{kj} - \bar F_j\big)\big(\tfrac1K - \pi_{dj}\big)

It costs K² evaluations of f per sample (at most K(K−1)/2 + 1 distinct; all are evaluated, vectorized) and
memory O(L·K³·D); for K = 2 it is not identical to ARM (it uses the over-parameterized 2-logit form).

DisARM's categorical counterpart is not implemented: the DisARM paper covers binary variables only (its
categorical generalization came later, Dong, Mnih & Tucker 2021, "Coupled gradient estimators").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from estimators._common import bcast
from stochgrad import BACKENDS, register_estimator

REF_ARM = "Yin & Zhou 2019 (ICLR, arXiv:1807.11143), ARM: Augment-REINFORCE-Merge"
REF_DISARM = "Dong, Mnih & Tucker 2020 (NeurIPS, arXiv:2006.10680), DisARM"
REF_ARSM = "Yin, Yue & Zhou 2019 (ICML, arXiv:1905.01413), ARSM: Augment-REINFORCE-Swap-Merge"


def _pair(ctx: Any) -> tuple[Any, Any, Any, Any]:
    """(θ [R,1,D], u [R,L,D], b = 1[u < σ(θ)], b̃ = 1[u > σ(−θ)])."""
    B = ctx.B
    th = ctx.batched()["logits"][:, None]
    u = ctx.noise.uniform((ctx.R, ctx.L, ctx.dim))
    one, zero = B.xp.ones_like(u), B.xp.zeros_like(u)
    b = B.where(u < B.sigmoid(th), one, zero)
    bt = B.where(u > B.sigmoid(-th), one, zero)
    return th, u, b, bt


def arm(ctx: Any) -> dict[str, Any]:
    """ARM: mean_L (f(b̃) − f(b)) (u − ½), one shared u ∈ (0,1)^D per sample."""
    _, u, b, bt = _pair(ctx)
    df = ctx.f(bt) - ctx.f(b)  # [R, L]
    return {"logits": (bcast(df, u) * (u - 0.5)).mean(1)}


def disarm(ctx: Any) -> dict[str, Any]:
    """DisARM: mean_L ½ (f(b) − f(b̃)) (b − b̃) σ(|θ|)."""
    th, _, b, bt = _pair(ctx)
    df = ctx.f(b) - ctx.f(bt)
    w = 0.5 * ctx.B.sigmoid(ctx.B.xp.abs(th))
    return {"logits": (bcast(df, b) * (b - bt) * w).mean(1)}


def swap_all(ctx: Any, X: Any) -> Any:
    """X [..., K] -> [..., K(k), K(j), K(i)]: X with entries k and j swapped (exact copies, no arithmetic)."""
    eye = ctx.B.asarray(np.eye(X.shape[-1]), ctx.dtype, ctx.device)
    is_k = eye[:, None, :] > 0.5  # i == k  [K, 1, K]
    is_j = eye[None, :, :] > 0.5  # i == j  [1, K, K]
    Xi, Xk, Xj = X[..., None, None, :], X[..., :, None, None], X[..., None, :, None]
    return ctx.B.where(is_k, Xj, ctx.B.where(is_j, Xk, Xi))


def arsm(ctx: Any) -> dict[str, Any]:
    """ARSM (multivariate): mean_L Σ_j (F_kj − mean_m F_mj)(1/K − π_dj), F_kj = f(z^{k⇌j})."""
    B, xp = ctx.B, ctx.B.xp
    th = ctx.batched()["logits"][:, None]  # [R, 1, D, K]
    K = th.shape[-1]
    u = ctx.noise.uniform((ctx.R, ctx.L, ctx.dim, K))
    E = -B.log(u)  # Exp(1): π = E / ΣE ~ Dir(1)
    pi = E / E.sum(-1, keepdims=True)
    Xs = swap_all(ctx, B.log(E))  # log π up to a per-site constant, swapped: [R, L, D, k, j, i]
    idx = B.argmax(th[..., None, None, :] - Xs, -1)  # argmin_i (log π_i − θ_i)  [R, L, D, k, j]
    Z = xp.moveaxis(B.one_hot(idx, K, u), 2, 4)  # [R, L, k, j, D, K]
    F = ctx.f(Z)  # [R, L, k, j]
    Fc = F - F.mean(2, keepdims=True)
    g = xp.einsum("rlkj,rldj->rldk", Fc, 1.0 / K - pi)
    return {"logits": g.mean(1)}


def _register() -> None:
    base = dict(unbiased=True, family="arm")
    register_estimator("arm", distributions=("bernoulli",), reference=REF_ARM, **base).implementation(*BACKENDS)(arm)
    register_estimator("disarm", distributions=("bernoulli",), reference=REF_DISARM, **base).implementation(*BACKENDS)(
        disarm
    )
    register_estimator("arsm", distributions=("categorical",), reference=REF_ARSM, **base).implementation(*BACKENDS)(
        arsm
    )


_register()
