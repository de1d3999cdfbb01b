r"""Measure-valued derivatives (MVD): weak derivatives of the density, one pair of f-evaluations per coordinate.

.. math::
    \partial_{\theta_i} \mathbb{E}_{p(z;\theta)}[f(z)]
      = c_{\theta_i}\bigl(\mathbb{E}_{p_i^+}[f(z)] - \mathbb{E}_{p_i^-}[f(z)]\bigr),\qquad
    \hat g_i = \frac{c_{\theta_i}}{L}\sum_{l=1}^L \bigl(f(z^{+}_{i,l}) - f(z^{-}_{i,l})\bigr)

where :math:`\partial_{\theta_i} p = c_{\theta_i}(p_i^+ - p_i^-)` with :math:`p_i^\pm` probability densities
(a weak derivative, Pflug 1996).  For a product distribution, :math:`z^{\pm}_{i,l}` equals a shared sample
:math:`z_l \sim p` except at the site :math:`d(i)` of coordinate i, which is drawn from the site's
:math:`p^\pm`.  Decompositions used (Mohamed et al. 2020, JMLR 21(132), §6 and Table 1):

=========================  ==========================  =================================  ============================
parameter                  :math:`c`                   :math:`p^+`                        :math:`p^-`
=========================  ==========================  =================================  ============================
normal ``loc`` μ           :math:`1/(\sigma\sqrt{2\pi})`  :math:`\mu + \sigma W`           :math:`\mu - \sigma W`
normal ``scale`` σ         :math:`1/\sigma`            double-sided Maxwell(μ, σ)         :math:`\mathcal N(\mu, \sigma^2)`
exponential ``rate`` λ     :math:`1/\lambda`           Exp(λ) = Gamma(1, λ)               Gamma(2, λ)
gamma ``rate`` β (helper)  :math:`\alpha/\beta`        Gamma(α, β)                        Gamma(α+1, β)
bernoulli ``logits`` ℓ     :math:`\sigma(\ell)(1-\sigma(\ell))`  δ₁                      δ₀
categorical ``logits`` ℓ_k :math:`p_k`                 δ_{e_k} (category k)               Categorical(p)
=========================  ==========================  =================================  ============================

W ~ Rayleigh(1) = Weibull(shape 2, rate ½) (:math:`W = \sqrt{-2\log U}`).  Gamma's ``concentration`` has no
standard weak derivative (∂α log p = log βz − ψ(α) changes sign at a point with no closed-form split), so
``gamma`` is NOT declared: the rate decomposition (:func:`gamma_rate_parts`) serves ``exponential``
(α = 1, drawn from uniforms) and is tested on its own; use ``score_function*`` or ``implicit_reparam`` for gamma.

``coupling`` (default True): common random numbers between the positive and negative parts --
normal loc: the same W (z± = μ ± σW); normal scale: z⁻ = μ + σε and z⁺ = μ + σ·sign(ε)·√(ε² + 2E) with
E ~ Exp(1) (a double-sided Maxwell built on the same ε); rates: z⁺ = G/β, z⁻ = (G + E)/β.  False draws
the two parts independently.  For the normal loc the mirrored coupling helps when f is locally even
around μ and can double the variance when f is locally linear; for scale and rate it helps for smooth
f.  For discrete sites p⁺ is a point mass: coupling only decides whether the negative draw is shared by
a site's K category coordinates (categorical) and has no effect for bernoulli.

Cost per call: every coordinate gets its own pair, 2·C·L evaluations of f for C coordinates (C = D, or
D·K for categorical), vectorized over coordinates, samples and replicates.  When f is separable the
shared sites cancel exactly in f(z⁺) − f(z⁻), so only the changed site's term g(z_d^±) is evaluated
(same numbers, C·L·D less memory); non-separable objectives evaluate f on [R, L·C, *event] arrays.
Needs only evaluations of f (no derivative, works for discontinuous f) and the decomposition.
References: Pflug (1996), "Optimization of Stochastic Models"; Heidergott & Vázquez-Abad (2000, 2008);
Mohamed, Rosca, Figurnov & Mnih (2020), JMLR 21(132) §6.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from stochgrad import Hyper, register_estimator

REFERENCE = "Pflug 1996 (Optimization of Stochastic Models); Mohamed et al. 2020 JMLR 21(132) sec. 6"
HYPER = {"coupling": Hyper(True, doc="common random numbers between the positive and negative parts")}
SQRT_2PI = math.sqrt(2 * math.pi)

# A part: (c [R, D, Kc], z⁺ [R, L, D, Kc, *site_event], z⁻ same): Kc coordinates per site (1, or K).
Part = tuple[Any, Any, Any]


def _site(x: Any) -> Any:
    """Per-site parameter [R, D] -> [R, 1, D, 1], aligned with draws [R, L, D, 1]."""
    return x[:, None, :, None]


def normal_parts(ctx: Any, P: dict, coupling: bool) -> dict[str, Part]:
    B, shape = ctx.B, (ctx.R, ctx.L, ctx.dim, 1)
    mu, s = _site(P["loc"]), _site(P["scale"])
    rayleigh = lambda: B.xp.sqrt(-2 * B.log(ctx.noise.uniform(shape)))
    w = rayleigh()
    w_minus = w if coupling else rayleigh()
    eps, e = ctx.noise.normal(shape), -B.log(ctx.noise.uniform(shape))
    maxwell = B.xp.sign(eps) * B.xp.sqrt(eps * eps + 2 * e)  # double-sided Maxwell(0, 1) on the same ε
    eps_minus = eps if coupling else ctx.noise.normal(shape)
    return {
        "loc": ((1 / (P["scale"] * SQRT_2PI))[..., None], mu + s * w, mu - s * w_minus),
        "scale": ((1 / P["scale"])[..., None], mu + s * maxwell, mu + s * eps_minus),
    }


def gamma_rate_parts(ctx: Any, alpha: Any, rate: Any, coupling: bool) -> Part:
    """∂β of Gamma(α, β): c = α/β, p⁺ = Gamma(α, β), p⁻ = Gamma(α+1, β); coupled via G_{α+1} = G_α + E."""
    B, shape = ctx.B, (ctx.R, ctx.L, ctx.dim, 1)
    a, b = _site(alpha), _site(rate)
    g = ctx.noise.standard_gamma(a, shape)
    g_minus = g - B.log(ctx.noise.uniform(shape)) if coupling else ctx.noise.standard_gamma(a + 1, shape)
    return (alpha / rate)[..., None], g / b, g_minus / b


def exponential_parts(ctx: Any, P: dict, coupling: bool) -> dict[str, Part]:
    """Gamma-rate decomposition at α = 1 with exponentials from uniforms: Gamma(2, λ) = (E₁ + E₂)/λ."""
    B, shape, lam = ctx.B, (ctx.R, ctx.L, ctx.dim, 1), P["rate"]
    expo = lambda: -B.log(ctx.noise.uniform(shape))
    e = expo()
    g2 = (e if coupling else expo()) + expo()
    return {"rate": ((1 / lam)[..., None], e / _site(lam), g2 / _site(lam))}


def bernoulli_parts(ctx: Any, P: dict, coupling: bool) -> dict[str, Part]:
    q = ctx.B.sigmoid(P["logits"])
    one = ctx.B.xp.broadcast_to(_site(0 * q + 1), (ctx.R, ctx.L, ctx.dim, 1))
    return {"logits": ((q * (1 - q))[..., None], one, 0 * one)}


def categorical_parts(ctx: Any, P: dict, coupling: bool) -> dict[str, Part]:
    B, lg = ctx.B, P["logits"]  # [R, D, K]
    R, L, D, K = ctx.R, ctx.L, ctx.dim, int(lg.shape[-1])
    eye = B.asarray(np.eye(K), ctx.dtype, ctx.device)
    plus = B.xp.broadcast_to(eye, (R, L, D, K, K))  # coordinate (d, k): site d set to category k
    if coupling:  # one negative draw per site, shared by its K coordinates
        minus = B.xp.broadcast_to(ctx.sample(P)[:, :, :, None, :], (R, L, D, K, K))
    else:
        minus = B.xp.swapaxes(ctx.sample(P, L=L * K).reshape(R, L, K, D, K), 2, 3)
    return {"logits": (B.softmax(lg, -1), plus, minus)}


# distribution -> builder of {param: (c, z⁺, z⁻)}; every parameter of each distribution is covered
PARTS: dict[str, Callable[[Any, dict, bool], dict[str, Part]]] = {
    "normal": normal_parts,
    "exponential": exponential_parts,
    "bernoulli": bernoulli_parts,
    "categorical": categorical_parts,
}


def site_values(ctx: Any, zr: Any) -> Any:
    """Separable f: g_d at the replaced site only, [R, L, D, Kc, *E] -> [R, L, D, Kc]."""
    R, L, D, Kc = (int(n) for n in zr.shape[:4])
    x = ctx.B.xp.swapaxes(zr, 2, 3).reshape(R, L * Kc, D, *zr.shape[4:])
    return ctx.B.xp.swapaxes(ctx.f_site(x).reshape(R, L, Kc, D), 2, 3)


def full_values(ctx: Any, zr: Any, z: Any) -> Any:
    """Any f: f(z with site d(i) replaced) for every coordinate i, [R, L, D, Kc, *E] -> [R, L, D, Kc]."""
    B = ctx.B
    R, L, D, Kc = (int(n) for n in zr.shape[:4])
    E = tuple(zr.shape[4:])
    mask = B.asarray(np.eye(D).reshape(D, 1, D, *(1,) * len(E)), ctx.dtype, ctx.device) > 0.5
    Z = B.where(mask, zr[:, :, :, :, None], z[:, :, None, None])  # [R, L, D, Kc, D, *E]
    return ctx.f(Z.reshape(R, L * D * Kc, D, *E)).reshape(R, L, D, Kc)


def measure_valued(ctx: Any, separable: bool | None = None) -> dict[str, Any]:
    r"""MVD :math:`\hat g_i = \frac{c_i}{L}\sum_l [f(z^+_{i,l}) - f(z^-_{i,l})]` for every coordinate i.

    One array-op implementation for NumPy, PyTorch and JAX (no autodiff); decompositions, ``coupling`` and
    cost in the module docstring.  ``separable`` overrides the objective's flag (tests use it to compare
    the per-site shortcut with the general path).
    """
    P = ctx.batched()
    parts = PARTS[ctx.dist.name](ctx, P, bool(ctx.hyper.get("coupling", True)))
    if separable is None:
        separable = ctx.separable
    z = None if separable else ctx.sample(P)
    out = {}
    for name, (c, zp, zm) in parts.items():
        diff = (
            site_values(ctx, zp) - site_values(ctx, zm)
            if separable
            else full_values(ctx, zp, z) - full_values(ctx, zm, z)
        )
        out[name] = (c * diff.mean(1)).reshape(P[name].shape)
    return out


def _register() -> None:
    caps = dict(distributions=tuple(PARTS), unbiased=True, reference=REFERENCE, hyperparameters=HYPER)
    register_estimator("measure_valued", family="measure_valued", **caps).implementation("numpy", "torch", "jax")(
        measure_valued
    )


_register()
