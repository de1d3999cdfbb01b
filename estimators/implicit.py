r"""Implicit reparameterization gradients (Figurnov, Mohamed & Mnih, 2018).

A draw z with CDF F(z; θ) moves with θ along the curve F(z; θ) = u (u fixed), so without inverting F

.. math::
    \frac{dz}{d\theta} = -\frac{\partial_\theta F(z;\theta)}{p(z;\theta)},\qquad
    \nabla_\theta \mathbb{E}_{p(z;\theta)}[f(z)] \approx \frac1L \sum_{l=1}^{L}
        \nabla_z f(z_l)^{\top} \frac{dz_l}{d\theta},\quad z_l \sim p(z;\theta).

Requires f differentiable in z and a distribution whose CDF derivative ∂_θF is computable: per
coordinate for gamma, beta, von_mises, student_t, truncated_normal, mixture_normal; for dirichlet the
marginal z_j ~ Beta(α_j, α₀ - α_j) moves by dz_j/dα_j and the other coordinates shrink proportionally
(z_k/(1 - z_j) is independent of z_j and of α_j), giving ∂_{α_j} = dz_j/dα_j (f'_j - Σ_k z_k f'_k)/(1 - z_j).
All parameters get gradients; for location/scale parameters dz/dθ is the explicit one (1, (z-μ)/σ).
von Mises lives on the fixed support [-π, π) (F from -π), so dz/dμ = 1 - p(-π)/p(z); hyperparameter
``circular_wrap=True`` switches to the wrapped reparameterization, valid for 2π-periodic f only.
Every slope is a function of (z, θ) only, so the draw itself may come from any exact sampler.
Reference: M. Figurnov, S. Mohamed, A. Mnih, "Implicit Reparameterization Gradients", NeurIPS 2018
(arXiv:1805.08498); Jankowiak & Obermeyer 2018 (arXiv:1806.01851) for the Dirichlet marginal form.

Numerics (``estimators/_implicit_cdf.py``, one backend-generic code for NumPy/PyTorch/JAX): series and
continued fractions with forward-mode derivatives for gamma and beta, Gauss-Legendre for von Mises,
closed forms for truncated normal and mixtures.  JAX uses ``jax.lax.random_gamma_grad`` for the gamma
(as accurate, ~1e-12); torch's ``_standard_gamma_grad`` (errors up to 7e-4) and ``_dirichlet_grad``
(wrong far in the tails) are not used.  torch/JAX attach the slopes as
z = stop(z) + Σ_θ (θ - stop(θ))·stop(dz/dθ) and let autodiff take ∇_z f.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimators import _implicit_cdf as ic
from estimators._common import AUTODIFF
from stochgrad import Hyper, register_estimator

REFERENCE = "Figurnov, Mohamed & Mnih 2018 (NeurIPS, arXiv:1805.08498); Jankowiak & Obermeyer 2018 (Dirichlet)"
Slopes = dict[str, Any]
WRAP_DOC = (
    "von_mises only. False: F is the CDF on the fixed support [-π, π), unbiased for every f. True: the "
    "circular reparameterization z = wrap(μ + x) of Figurnov et al./TFP (dz/dμ = 1, dz/dκ of the centred "
    "CDF): unbiased only for 2π-periodic f (e.g. cos with integer ω), with lower variance there when the "
    "mode is near ±π"
)


def _gamma_slope(B: Any, a: Any, x: Any) -> Any:
    if B.name == "jax":
        import jax
        import jax.numpy as jnp

        a, x = jnp.broadcast_arrays(a, x)
        return jax.lax.random_gamma_grad(a, x)
    return ic.gamma_dzda(B, a, x)


def _gamma(B: Any, z: Any, Pa: dict, hyper: dict) -> Slopes:
    a, b = Pa["concentration"], Pa["rate"]
    return {"concentration": _gamma_slope(B, a, z * b) / b, "rate": -z / b}


def _beta(B: Any, z: Any, Pa: dict, hyper: dict) -> Slopes:
    da, db = ic.beta_dz(B, Pa["concentration1"], Pa["concentration0"], z, 1 - z)
    return {"concentration1": da, "concentration0": db}


def _dirichlet(B: Any, z: Any, Pa: dict, hyper: dict) -> Slopes:
    """c_j = (dz_j/dα_j) / (1 - z_j) of the marginal Beta(α_j, α₀ - α_j) (see :func:`_dirichlet_vjp`)."""
    a = Pa["concentration"]
    zc = 1 - z
    da, _ = ic.beta_dz(B, a, B.sum(a, -1)[..., None] - a, z, zc)
    ok = zc > 0  # z_j = 1 only if every other gamma underflowed: slope 0 (da is 0 there too)
    return {"concentration": B.where(ok, da / B.where(ok, zc, 1 + 0 * zc), 0 * zc)}


def _von_mises(B: Any, z: Any, Pa: dict, hyper: dict) -> Slopes:
    loc, k = Pa["loc"], Pa["concentration"]
    if hyper.get("circular_wrap", False):  # z = wrap(μ + x): exact for 2π-periodic f only
        return {"loc": 1 + 0 * z, "concentration": ic.von_mises_dzdk_centered(B, k, ic.wrap_angle(B, z - loc))}
    dloc, dk = ic.von_mises_dz(B, loc, k, z)
    return {"loc": dloc, "concentration": dk}


def _student_t(B: Any, z: Any, Pa: dict, hyper: dict) -> Slopes:
    s = Pa["scale"]
    t = (z - Pa["loc"]) / s
    return {"df": s * ic.student_t_dtdnu(B, Pa["df"], t), "loc": 1 + 0 * z, "scale": t}


def _truncated_normal(B: Any, z: Any, Pa: dict, hyper: dict) -> Slopes:
    dloc, dscale = ic.truncated_normal_dz(B, Pa["loc"], Pa["scale"], Pa["low"], Pa["high"], z)
    return {"loc": dloc, "scale": dscale}  # low/high are fixed (not differentiated) parameters


def _mixture_normal(B: Any, z: Any, Pa: dict, hyper: dict) -> Slopes:
    return ic.mixture_normal_dz(B, Pa["logits"], Pa["locs"], Pa["scales"], z)


def _site_vjp(z: Any, gz: Any, S: Slopes) -> Slopes:
    """Σ over z's coordinates of f'(z) dz/dθ when each parameter moves only its own site (a K axis on
    the parameter but not on z, as for mixtures, broadcasts f')."""
    return {k: (gz[..., None] if s.ndim > gz.ndim else gz) * s for k, s in S.items()}


def _site_attach(B: Any, z: Any, S: Slopes, dP: dict) -> Any:
    out = z
    for k, s in S.items():
        t = dP[k] * s
        out = out + (B.sum(t, -1) if s.ndim > z.ndim else t)
    return out


def _dirichlet_vjp(z: Any, gz: Any, S: Slopes) -> Slopes:
    return {"concentration": S["concentration"] * (gz - (z * gz).sum(-1)[..., None])}


def _dirichlet_attach(B: Any, z: Any, S: Slopes, dP: dict) -> Any:
    w = dP["concentration"] * S["concentration"]  # z + w - z Σw has Jacobian c_j (δ_jk - z_k) ... per α_j
    return z + w - z * B.sum(w, -1)[..., None]


@dataclass(frozen=True)
class Implicit:
    slopes: Callable[[Any, Any, dict, dict], Slopes]  # (B, z [R, L, *event], aligned params, hyper) -> dz/dθ
    vjp: Callable[[Any, Any, Slopes], Slopes] = _site_vjp  # NumPy: per-sample f'(z)ᵀ dz/dθ
    attach: Callable[[Any, Any, Slopes, dict], Any] = _site_attach  # z + (dz/dθ)·Δθ for autodiff


IMPLICIT: dict[str, Implicit] = {
    "gamma": Implicit(_gamma),
    "beta": Implicit(_beta),
    "dirichlet": Implicit(_dirichlet, _dirichlet_vjp, _dirichlet_attach),
    "von_mises": Implicit(_von_mises),
    "student_t": Implicit(_student_t),
    "truncated_normal": Implicit(_truncated_normal),
    "mixture_normal": Implicit(_mixture_normal),
}


def slopes(ctx: Any, z: Any, P: dict | None = None) -> Slopes:
    """dz/dθ for draws z [R, L, *event] at batched parameters P (default ctx.batched()), no gradient."""
    P = ctx.batched() if P is None else P
    P = {k: ctx.B.stop_gradient(v) for k, v in P.items()}
    return IMPLICIT[ctx.dist.name].slopes(ctx.B, ctx.B.stop_gradient(z), ctx.dist.align(P), ctx.hyper)


def implicit_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """mean_L f'(z)ᵀ dz/dθ with the objective's analytic derivative (``ctx.f_grad``)."""
    P = ctx.batched()
    z = ctx.sample(P)
    S = slopes(ctx, z, P)
    gz = ctx.f_grad(z)
    per_sample = IMPLICIT[ctx.dist.name].vjp(z, gz, S)
    return {k: v.mean(1) for k, v in per_sample.items()}


def implicit_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of mean_L f(z + Σ_θ (θ - stop θ) dz/dθ), the slopes held constant."""
    B, P = ctx.B, ctx.batched()
    z = ctx.sample(P)
    S = slopes(ctx, z, P)
    entry = IMPLICIT[ctx.dist.name]

    def surrogate(Q: dict) -> Any:
        dP = ctx.dist.align({k: Q[k] - B.stop_gradient(Q[k]) for k in S})
        return ctx.f(entry.attach(B, z, S, dP)).mean(1)

    return ctx.grad(surrogate, P)


def _register() -> None:
    caps = dict(
        distributions=tuple(IMPLICIT),
        hyperparameters={"circular_wrap": Hyper(False, doc=WRAP_DOC)},
        unbiased=True,
        reference=REFERENCE,
        requires=("differentiable",),
        family="implicit",
    )
    est = register_estimator("implicit_reparam", **caps)
    est.implementation("numpy")(implicit_numpy)
    est.implementation(*AUTODIFF)(implicit_autodiff)


_register()
