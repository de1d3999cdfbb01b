r"""Pathwise (reparameterization) gradients.

.. math::
    z = g(\theta, \varepsilon),\ \varepsilon \sim p(\varepsilon):\quad
    \nabla_\theta \mathbb{E}[f(z)] \approx \frac1L \sum_{l=1}^L \nabla_z f(z_l)\, \partial_\theta g(\theta, \varepsilon_l)

Requires f differentiable and a differentiable sampling path ``g``.  Reference: Kingma & Welling (2014),
"Auto-Encoding Variational Bayes"; Rezende et al. (2014); review: Mohamed et al. (2020), JMLR 21(132), §5.

Paths (one per distribution):

- normal: :math:`z = \mu + \sigma\varepsilon`.
- mvn: :math:`z = \mu + L\varepsilon` (lower triangle of L only), so
  :math:`\partial_\mu = f'(z)`, :math:`\partial_L = \mathrm{tril}(f'(z)\,\varepsilon^\top)`.
- exponential: :math:`z = -\log(u)/\lambda`, :math:`\partial_\lambda z = -z/\lambda`.
- student_t: :math:`z = \mu + \sigma\,\varepsilon\sqrt{\nu/(2G)}`, :math:`G \sim \mathrm{Gamma}(\nu/2, 1)`; the df
  path goes through G with the implicit gamma derivative :math:`\partial_\alpha G = -\partial_\alpha F(G;\alpha)/p(G;\alpha)`
  (Figurnov et al. 2018): :math:`\partial_\nu z = \tfrac12 \sigma\varepsilon\sqrt{\nu/(2G)}\,(1/\nu - \partial_\nu G / G)`,
  :math:`\partial_\nu G = \tfrac12\partial_\alpha G|_{\alpha=\nu/2}` (``estimators._implicit_cdf.gamma_dzda``: series / continued fraction, ~1e-12 relative on every backend).
- truncated_normal: inverse CDF :math:`z = \mu + \sigma\xi`, :math:`\Phi(\xi) = (1-u)\Phi(\alpha) + u\Phi(\beta)`,
  :math:`\alpha = (\mathrm{low}-\mu)/\sigma`, :math:`\beta = (\mathrm{high}-\mu)/\sigma`, hence
  :math:`\partial_\alpha\xi = (1-u)\varphi(\alpha)/\varphi(\xi)`, :math:`\partial_\beta\xi = u\varphi(\beta)/\varphi(\xi)` and
  :math:`\partial_\mu z = 1 - \partial_\alpha\xi - \partial_\beta\xi`,
  :math:`\partial_\sigma z = \xi - \alpha\partial_\alpha\xi - \beta\partial_\beta\xi` (low/high are fixed).

The reparameterizations live in :data:`RSAMPLE` (one entry per distribution, written against ``ctx.B`` so
PyTorch and JAX share it); NumPy writes the chain rule out analytically in :data:`NUMPY_GRADS`.  Both draw
their base noise with the same function (the first element of each RSAMPLE entry), in the same order, so
identical noise gives identical estimates across backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from estimators._common import AUTODIFF
from estimators._implicit_cdf import gamma_dzda
from stochgrad import Context, register_estimator

REFERENCE = "Kingma & Welling 2014 (arXiv:1312.6114); Mohamed et al. 2020 JMLR 21(132) sec. 5"
REF_GAMMA = "Figurnov, Mohamed & Mnih 2018 (implicit reparameterization, arXiv:1805.08498)"


# -- base noise (shared by the NumPy and autodiff implementations) ---------------------------------
def _normal_base(ctx: Any) -> dict:
    return {"eps": ctx.noise.normal((ctx.R, ctx.L, ctx.dim))}


def _uniform_base(ctx: Any) -> dict:
    return {"u": ctx.noise.uniform((ctx.R, ctx.L, ctx.dim))}


def _student_t_base(ctx: Any) -> dict:
    shape = (ctx.R, ctx.L, ctx.dim)
    eps = ctx.noise.normal(shape)
    return {"eps": eps, "G": ctx.noise.standard_gamma(ctx.params["df"] / 2, shape)}


# -- differentiable maps from batched params P [R, ...] and base noise to z [R, L, D] ----------------
def _normal_rsample(ctx: Any, P: dict, base: dict) -> Any:
    return P["loc"][:, None] + P["scale"][:, None] * base["eps"]


def _mvn_rsample(ctx: Any, P: dict, base: dict) -> Any:
    return ctx.dist.rsample(ctx.B, ctx.dist.align(P), base["eps"])


def _exponential_rsample(ctx: Any, P: dict, base: dict) -> Any:
    return -ctx.B.log(base["u"]) / P["rate"][:, None]


def _student_t_rsample(ctx: Any, P: dict, base: dict) -> Any:
    B = ctx.B
    nu = P["df"][:, None]
    alpha = nu / 2
    G0 = base["G"]
    # implicit reparameterization: value G0, derivative dG/dα from the shared accurate gamma slope
    G = G0 + (alpha - B.stop_gradient(alpha)) * B.stop_gradient(gamma_dzda(B, B.stop_gradient(alpha), G0))
    return P["loc"][:, None] + P["scale"][:, None] * base["eps"] * B.xp.sqrt(nu / (2 * G))


def _truncated_normal_rsample(ctx: Any, P: dict, base: dict) -> Any:
    Pa = {k: v[:, None] for k, v in P.items()}
    Pa["low"], Pa["high"] = ctx.B.stop_gradient(Pa["low"]), ctx.B.stop_gradient(Pa["high"])  # fixed bounds
    return ctx.dist.rsample(ctx.B, Pa, base["u"])


# distribution -> (draw base noise, differentiable map from batched params + noise to z)
RSAMPLE: dict[str, tuple[Callable, Callable]] = {
    "normal": (_normal_base, _normal_rsample),
    "mvn": (_normal_base, _mvn_rsample),
    "exponential": (_uniform_base, _exponential_rsample),
    "student_t": (_student_t_base, _student_t_rsample),
    "truncated_normal": (_uniform_base, _truncated_normal_rsample),
}


# -- NumPy: chain rule written out (f'(z) from ctx.f_grad, the objective's analytic derivative) -------------
def _numpy_normal(ctx: Any) -> dict[str, np.ndarray]:
    """z = μ + σε:  ∂μ = mean_L f'(z),  ∂σ = mean_L f'(z) ε."""
    eps = _normal_base(ctx)["eps"]
    z = ctx.params["loc"] + ctx.params["scale"] * eps
    gz = ctx.f_grad(z)
    return {"loc": gz.mean(1), "scale": (gz * eps).mean(1)}


def _numpy_mvn(ctx: Any) -> dict[str, np.ndarray]:
    """z = μ + Lε:  ∂μ = mean_L f'(z),  ∂L = tril(mean_L f'(z) εᵀ)."""
    eps = _normal_base(ctx)["eps"]
    z = ctx.dist.rsample(ctx.B, ctx.params, eps)
    gz = ctx.f_grad(z)
    return {"loc": gz.mean(1), "scale_tril": np.tril((gz[..., :, None] * eps[..., None, :]).mean(1))}


def _numpy_exponential(ctx: Any) -> dict[str, np.ndarray]:
    """z = -log(u)/λ:  ∂λ = mean_L f'(z) (-z/λ)."""
    lam = ctx.params["rate"]
    z = -np.log(_uniform_base(ctx)["u"]) / lam
    return {"rate": (ctx.f_grad(z) * (-z / lam)).mean(1)}


def _numpy_student_t(ctx: Any) -> dict[str, np.ndarray]:
    """z = μ + σ ε r, r = √(ν/(2G)):  ∂μ = f', ∂σ = f' ε r, ∂ν = f' σ ε r (1/ν - ∂_ν G/G) / 2."""
    base = _student_t_base(ctx)
    eps, G = base["eps"], base["G"]
    nu, mu, s = ctx.params["df"], ctx.params["loc"], ctx.params["scale"]
    t = eps * np.sqrt(nu / (2 * G))
    gz = ctx.f_grad(mu + s * t)
    dG_dnu = 0.5 * gamma_dzda(ctx.B, nu / 2, G)
    return {
        "df": (gz * s * t * 0.5 * (1 / nu - dG_dnu / G)).mean(1),
        "loc": gz.mean(1),
        "scale": (gz * t).mean(1),
    }


def _numpy_truncated_normal(ctx: Any) -> dict[str, np.ndarray]:
    """Inverse-CDF path: ∂μ z = 1 - ∂αξ - ∂βξ,  ∂σ z = ξ - α∂αξ - β∂βξ (see module docstring)."""
    u = _uniform_base(ctx)["u"]
    mu, s = ctx.params["loc"], ctx.params["scale"]
    a, b = (ctx.params["low"] - mu) / s, (ctx.params["high"] - mu) / s
    xi = ctx.dist.icdf_std(ctx.B, a, b, u)
    da = (1 - u) * np.exp(0.5 * (xi - a) * (xi + a))  # (1-u) φ(α)/φ(ξ)
    db = u * np.exp(0.5 * (xi - b) * (xi + b))  # u φ(β)/φ(ξ)
    gz = ctx.f_grad(mu + s * xi)
    return {"loc": (gz * (1 - da - db)).mean(1), "scale": (gz * (xi - a * da - b * db)).mean(1)}


NUMPY_GRADS: dict[str, Callable] = {
    "normal": _numpy_normal,
    "mvn": _numpy_mvn,
    "exponential": _numpy_exponential,
    "student_t": _numpy_student_t,
    "truncated_normal": _numpy_truncated_normal,
}


def pathwise_numpy(ctx: Context) -> dict[str, np.ndarray]:
    """Pathwise gradient with the chain rule written out (NumPy, float64)."""
    return NUMPY_GRADS[ctx.dist.name](ctx)


def pathwise_autodiff(ctx: Context) -> dict[str, Any]:
    """Pathwise gradient by autodiff through z = g(θ, ε) (PyTorch autograd / jax.grad)."""
    draw, rsample = RSAMPLE[ctx.dist.name]
    base = draw(ctx)

    def surrogate(P: dict) -> Any:
        return ctx.f(rsample(ctx, P, base)).mean(1)

    grads = ctx.grad(surrogate)
    return {k: grads[k] for k in ctx.param_names}  # fixed parameters (e.g. low/high) left out


def _register() -> None:
    caps = dict(
        unbiased=True,
        reference=f"{REFERENCE}; student_t df: {REF_GAMMA}",
        requires=("differentiable",),
        family="pathwise",
    )
    assert set(NUMPY_GRADS) == set(RSAMPLE), "every backend covers the same distributions"
    est = register_estimator("pathwise", distributions=tuple(RSAMPLE), **caps)
    est.implementation("numpy")(pathwise_numpy)
    est.implementation(*AUTODIFF)(pathwise_autodiff)


_register()
