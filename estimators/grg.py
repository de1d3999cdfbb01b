r"""Generalized reparameterization gradient (GRG; Ruiz, Titsias & Blei 2016) for gamma, beta and dirichlet.

A standardizing transform makes the noise *weakly* dependent on the parameters.  For G ~ Gamma(α, 1) the
paper standardizes log G by its mean ψ(α) and standard deviation σ(α) = √ψ₁(α):

.. math::
    \varepsilon = T(G;\alpha) = \frac{\log G - \psi(\alpha)}{\sigma(\alpha)},\qquad
    G = T^{-1}(\varepsilon;\alpha) = e^{\sigma(\alpha)\varepsilon + \psi(\alpha)},

    \nabla_\alpha \mathbb{E}[f] = \underbrace{\mathbb{E}_{q(\varepsilon;\alpha)}\big[f'(G)\,\partial_\alpha T^{-1}\big]}_{g_\mathrm{rep}}
      + \underbrace{\mathbb{E}_{q(\varepsilon;\alpha)}\big[f(G)\,\partial_\alpha \log q(\varepsilon;\alpha)\big]}_{g_\mathrm{corr}},

with :math:`\partial_\alpha T^{-1} = G\,(\sigma'\varepsilon + \psi_1)`, :math:`\sigma' = \psi_2/(2\sigma)`, and
:math:`\log q(\varepsilon;\alpha) = \alpha y - e^{y} - \log\Gamma(\alpha) + \log\sigma`, :math:`y = \sigma\varepsilon + \psi`, so

.. math::
    \partial_\alpha \log q(\varepsilon;\alpha) = (y - \psi(\alpha)) + (\alpha - G)(\sigma'\varepsilon + \psi_1) + \sigma'/\sigma
    = \partial_G\log p(G)\,\partial_\alpha T^{-1} + \partial_\alpha\log p(G;\alpha) + \partial_\alpha\log|\partial_\varepsilon T^{-1}|

(the paper's eq. 9 split of g_corr).  A rate β enters as z = G/β (q(ε) does not depend on β: g_corr = 0).
Beta(a, b) = G₁/(G₁+G₀) and Dirichlet = G/ΣG use one standardized gamma per shape parameter (the paper's
construction for the beta).  Unbiased.  Requires f differentiable.
Noise: G from ``ctx.noise.standard_gamma`` and ε = T(G; α), so identical noise gives identical estimates
on every backend.  Reference: F. Ruiz, M. Titsias, D. Blei, "The Generalized Reparameterization Gradient",
NeurIPS 2016 (arXiv:1610.02287).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from estimators._common import AUTODIFF
from estimators._gamma_compose import SHAPES, GammaPath, estimate_autodiff, estimate_numpy
from stochgrad import register_estimator

REFERENCE = "Ruiz, Titsias & Blei 2016 (NeurIPS, arXiv:1610.02287), generalized reparameterization gradient"


def polygamma(B: Any, n: int, x: Any) -> Any:
    """ψ^{(n)}(x) on the context's backend (differentiable on PyTorch and JAX)."""
    if B.name == "torch":
        import torch

        return torch.polygamma(n, x)
    if B.name == "jax":
        from jax.scipy.special import polygamma as jpg

        return jpg(n, x)
    return special.polygamma(n, x)


def draw_noise(ctx: Any, a: Any) -> dict:
    """G ~ Gamma(α, 1) [R, L, *event] (ε = T(G; α) is computed from it).

    Draws that underflowed to 0 (float32 at small α: P(G < 1e-38) ≈ 1e-4 for α = 0.1) are raised to the
    smallest normal number, so log G and ε stay finite."""
    g = ctx.noise.standard_gamma(a, (ctx.R, ctx.L, *ctx.event_shape))
    tiny = float(ctx.B.xp.finfo(g.dtype).tiny)
    return {"G": ctx.B.where(g > tiny, g, tiny + 0 * g)}


def standardize(B: Any, G: Any, a: Any) -> Any:
    """ε = (log G − ψ(α)) / √ψ₁(α)."""
    return (B.log(G) - B.digamma(a)) / B.xp.sqrt(polygamma(B, 1, a))


def grg_terms_np(a: np.ndarray, nz: dict) -> dict[str, np.ndarray]:
    """NumPy pieces at fixed ε: G, ∂αT⁻¹ (g_rep slope) and ∂α log q(ε; α) (g_corr score)."""
    sig = np.sqrt(special.polygamma(1, a))
    dsig = special.polygamma(2, a) / (2 * sig)
    eps = (np.log(nz["G"]) - special.digamma(a)) / sig
    y = sig * eps + special.digamma(a)
    G = np.exp(y)
    ya = dsig * eps + special.polygamma(1, a)
    return {"G": G, "dG": G * ya, "score": (y - special.digamma(a)) + (a - G) * ya + dsig / sig, "eps": eps}


def _numpy_path(a: np.ndarray, nz: dict, hyper: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = grg_terms_np(a, nz)
    return t["G"], t["dG"], t["score"]


def _autodiff_path(B: Any, a: Any, nz: dict, hyper: dict) -> tuple[Any, Any]:
    """(G(α) = exp(σ(α)ε + ψ(α)), log q(ε; α)) with ε = T(G; α) held fixed."""
    eps = B.stop_gradient(standardize(B, nz["G"], B.stop_gradient(a)))
    sig = B.xp.sqrt(polygamma(B, 1, a))
    y = sig * eps + B.digamma(a)
    return B.exp(y), a * y - B.exp(y) - B.lgamma(a) + B.log(sig)


PATH = GammaPath(draw_noise, _numpy_path, _autodiff_path)


def grg_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """g_rep + g_corr per sample, chain rule written out (NumPy)."""
    return estimate_numpy(ctx, PATH, correction=True)


def grg_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of mean_L f(z(θ; ε)) + sg[f(z)] Σ log q(ε; α) (PyTorch / JAX)."""
    return estimate_autodiff(ctx, PATH, correction=True)


def _register() -> None:
    caps = dict(
        distributions=tuple(SHAPES),
        unbiased=True,
        reference=REFERENCE,
        requires=("differentiable",),
        family="grg",
    )
    est = register_estimator("grg", **caps)
    est.implementation("numpy")(grg_numpy)
    est.implementation(*AUTODIFF)(grg_autodiff)


_register()
