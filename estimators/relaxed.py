r"""Continuous relaxations and straight-through estimators for discrete latents (all biased).

Distributions: ``bernoulli(logits)`` (samples b ∈ {0,1}^D) and ``categorical(logits)`` (one-hot [D, K]).
Noise: Bernoulli uses logistic noise :math:`\ell = \log u - \log(1-u)`, :math:`u \sim U(0,1)^D`, so that
:math:`b = H(\theta + \ell) \sim \mathrm{Bern}(\sigma(\theta))`; categorical uses Gumbel noise
:math:`g_k = -\log(-\log u_k)`, :math:`b = \mathrm{onehot}(\arg\max_k(\theta_k + g_k))`.

``gumbel_softmax`` — Concrete / Gumbel-softmax relaxation (Maddison et al. 2017; Jang et al. 2017):

.. math::
    s_\tau = \sigma\!\big((\theta + \ell)/\tau\big)\ \text{(binary Concrete)},\qquad
    s_\tau = \mathrm{softmax}\big((\theta + g)/\tau\big)\ \text{(categorical)},\qquad
    \hat g = \frac1L \sum_l \nabla_\theta f(s_{\tau,l})

It differentiates f *at relaxed points*: f must be defined and differentiable on (0,1)^D (Bernoulli) or on the
simplex (categorical).  It estimates :math:`\nabla_\theta \mathbb{E}[f(s_\tau)]`, not
:math:`\nabla_\theta \mathbb{E}[f(b)]`: biased.  As τ → 0 the bias vanishes (for Bernoulli the limit
is :math:`p(1-p)\int_0^1 f'(s)\,ds = p(1-p)(f(1)-f(0))` per coordinate of a separable f) while the variance
grows like 1/τ.

``straight_through`` (Bengio, Léonard & Courville 2013), the variant that backpropagates through the
probabilities: forward the hard sample b, backward the Jacobian of :math:`p(\theta)` (σ or softmax):

.. math::
    \hat g = \frac1L\sum_l \Big(\frac{\partial p}{\partial\theta}\Big)^{\!\top} \nabla_z f(z)\big|_{z=b_l},
    \qquad\text{Bernoulli: } \hat g_d = p_d(1-p_d)\,\partial_d f(b),\quad
    \text{categorical: } \hat g_{dj} = p_{dj}\big(\partial_{dj} f(b) - \textstyle\sum_k p_{dk}\,\partial_{dk} f(b)\big).

Implemented as the surrogate :math:`z = b + p - \mathrm{stopgrad}(p)` (the forward value is exactly b).
Biased except in special cases (e.g. a per-site quadratic f at p = 1/2); no hyperparameter.  Other
variants (identity ST, slope-annealed ST) are not implemented.

``st_gumbel`` — straight-through Gumbel-softmax (Jang et al. 2017, "ST Gumbel-Softmax"): forward the hard
sample b, backward the relaxed sample's Jacobian, :math:`z = b + s_\tau - \mathrm{stopgrad}(s_\tau)`:

.. math::
    \hat g = \frac1L\sum_l \Big(\frac{\partial s_{\tau,l}}{\partial\theta}\Big)^{\!\top} \nabla_z f(z)\big|_{z=b_l}

Biased; f need only be differentiable at the vertices (evaluated at hard samples).

NumPy writes the chain rule out with ``ctx.f_grad``, the objective's analytic derivative (needs a separable f); PyTorch and JAX
differentiate the surrogates with autodiff.  All three draw the same noise in the same order, so they agree
on identical base noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from estimators._common import AUTODIFF
from stochgrad import Hyper, register_estimator

DISCRETE = ("bernoulli", "categorical")
TEMPERATURE = Hyper(0.5, low=1e-3, high=10.0, doc="relaxation temperature τ: bias -> 0 and variance -> ∞ as τ -> 0")
REF_GS = "Maddison, Mnih & Teh 2017 (ICLR, arXiv:1611.00712); Jang, Gu & Poole 2017 (ICLR, arXiv:1611.01144)"
REF_ST = "Bengio, Léonard & Courville 2013 (arXiv:1308.3432); variant: backprop through p(θ)"
REF_STGS = "Jang, Gu & Poole 2017 (ICLR, arXiv:1611.01144) sec. 2.2, straight-through Gumbel-softmax"


# -- per-distribution pieces (backend-generic, written against B) ------------------------------------
def _bern_noise(ctx: Any) -> Any:
    u = ctx.noise.uniform((ctx.R, ctx.L, ctx.dim))
    return ctx.B.log(u) - ctx.B.xp.log1p(-u)  # logistic


def _bern_relax(B: Any, th: Any, eps: Any, tau: float) -> Any:
    return B.sigmoid((th + eps) / tau)


def _bern_hard(B: Any, th: Any, eps: Any) -> Any:
    x = th + eps
    return B.stop_gradient(B.where(x > 0, B.xp.ones_like(x), B.xp.zeros_like(x)))


def _bern_probs(B: Any, th: Any) -> Any:
    return B.sigmoid(th)


def _bern_vjp(s: np.ndarray, q: np.ndarray, tau: float) -> np.ndarray:
    """(∂s/∂θ)ᵀ q for s = σ(x/τ), elementwise."""
    return q * s * (1.0 - s) / tau


def _cat_noise(ctx: Any) -> Any:
    K = ctx.event_shape[-1]
    return ctx.noise.gumbel((ctx.R, ctx.L, ctx.dim, K))


def _cat_relax(B: Any, th: Any, eps: Any, tau: float) -> Any:
    return B.softmax((th + eps) / tau, -1)


def _cat_hard(B: Any, th: Any, eps: Any) -> Any:
    x = B.stop_gradient(th + eps)
    return B.stop_gradient(B.one_hot(B.argmax(x, -1), x.shape[-1], x))


def _cat_probs(B: Any, th: Any) -> Any:
    return B.softmax(th, -1)


def _cat_vjp(s: np.ndarray, q: np.ndarray, tau: float) -> np.ndarray:
    """(∂s/∂θ)ᵀ q for s = softmax(x/τ) over the last axis."""
    return s * (q - (q * s).sum(-1, keepdims=True)) / tau


# distribution -> (draw noise, relaxed sample, hard sample, probabilities, NumPy vector-Jacobian product)
PIECES: dict[str, tuple[Callable, Callable, Callable, Callable, Callable]] = {
    "bernoulli": (_bern_noise, _bern_relax, _bern_hard, _bern_probs, _bern_vjp),
    "categorical": (_cat_noise, _cat_relax, _cat_hard, _cat_probs, _cat_vjp),
}


def _setup(ctx: Any) -> tuple[tuple, Any, Any]:
    pieces = PIECES[ctx.dist.name]
    P = ctx.batched()
    return pieces, P, pieces[0](ctx)


def _theta(P: dict) -> Any:
    return P["logits"][:, None]  # [R, 1, D(, K)]


# -- NumPy: chain rule written out (f' from ctx.f_grad, the objective's analytic derivative) ------------
def gumbel_softmax_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """mean_L (∂s_τ/∂θ)ᵀ f'(s_τ)."""
    (_, relax, _, _, vjp), P, eps = _setup(ctx)
    tau = float(ctx.hyper["temperature"])
    s = relax(ctx.B, _theta(P), eps, tau)
    return {"logits": vjp(s, ctx.f_grad(s), tau).mean(1)}


def straight_through_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """mean_L (∂p/∂θ)ᵀ f'(b)."""
    (_, _, hard, probs, vjp), P, eps = _setup(ctx)
    th = _theta(P)
    b = hard(ctx.B, th, eps)
    p = np.broadcast_to(probs(ctx.B, th), b.shape)
    return {"logits": vjp(p, ctx.f_grad(b), 1.0).mean(1)}


def st_gumbel_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """mean_L (∂s_τ/∂θ)ᵀ f'(b)."""
    (_, relax, hard, _, vjp), P, eps = _setup(ctx)
    tau = float(ctx.hyper["temperature"])
    th = _theta(P)
    s = relax(ctx.B, th, eps, tau)
    return {"logits": vjp(s, ctx.f_grad(hard(ctx.B, th, eps)), tau).mean(1)}


# -- PyTorch / JAX: autodiff of surrogates ----------------------------------------------------------
def gumbel_softmax_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of mean_L f(s_τ(θ))."""
    (_, relax, _, _, _), P, eps = _setup(ctx)
    tau = float(ctx.hyper["temperature"])
    return ctx.grad(lambda Q: ctx.f(relax(ctx.B, _theta(Q), eps, tau)).mean(1), P)


def straight_through_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of mean_L f(b + p(θ) - stopgrad p(θ))."""
    B = ctx.B
    (_, _, hard, probs, _), P, eps = _setup(ctx)
    b = hard(B, _theta(P), eps)

    def surrogate(Q: dict) -> Any:
        p = probs(B, _theta(Q))
        return ctx.f(b + (p - B.stop_gradient(p))).mean(1)

    return ctx.grad(surrogate, P)


def st_gumbel_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of mean_L f(b + s_τ(θ) - stopgrad s_τ(θ))."""
    B = ctx.B
    (_, relax, hard, _, _), P, eps = _setup(ctx)
    tau = float(ctx.hyper["temperature"])
    b = hard(B, _theta(P), eps)

    def surrogate(Q: dict) -> Any:
        s = relax(B, _theta(Q), eps, tau)
        return ctx.f(b + (s - B.stop_gradient(s))).mean(1)

    return ctx.grad(surrogate, P)


def _register() -> None:
    base = dict(distributions=DISCRETE, unbiased=False, family="relaxed", requires=("differentiable",))
    temp = {"temperature": TEMPERATURE}
    table = (
        ("gumbel_softmax", gumbel_softmax_numpy, gumbel_softmax_autodiff, temp, REF_GS),
        ("straight_through", straight_through_numpy, straight_through_autodiff, {}, REF_ST),
        ("st_gumbel", st_gumbel_numpy, st_gumbel_autodiff, temp, REF_STGS),
    )
    for name, np_fn, ad_fn, hyp, ref in table:
        caps = dict(base, hyperparameters=hyp, reference=ref)
        est = register_estimator(name, **caps)
        est.implementation("numpy")(np_fn)
        est.implementation(*AUTODIFF)(ad_fn)


_register()
