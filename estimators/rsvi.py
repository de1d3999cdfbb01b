r"""Rejection-sampling variational inference (RSVI; Naesseth, Ruiz, Linderman & Blei 2017) for gamma-based families.

Marsaglia–Tsang draws Gamma(α, 1) by proposing :math:`z = h(\varepsilon, \alpha)` with
:math:`\varepsilon \sim N(0, 1)` and accepting with a probability that depends on ε.  The *accepted* ε has
density :math:`\pi(\varepsilon;\alpha) = q(h(\varepsilon,\alpha);\alpha)\,\partial_\varepsilon h`, which depends on α,
so with ε held fixed

.. math::
    h(\varepsilon,\alpha) = (\alpha - \tfrac13)\Big(1 + \frac{\varepsilon}{\sqrt{9\alpha - 3}}\Big)^3,\qquad
    \nabla_\alpha \mathbb{E}[f(z)] = \underbrace{\mathbb{E}_\pi\big[f'(h)\,\partial_\alpha h\big]}_{g_\mathrm{rep}}
      + \underbrace{\mathbb{E}_\pi\big[f(h)\,\partial_\alpha \log\pi(\varepsilon;\alpha)\big]}_{g_\mathrm{cor}},

    \log\pi(\varepsilon;\alpha) = (\alpha-1)\log h - h - \log\Gamma(\alpha) + \tfrac12\log(\alpha-\tfrac13)
      + 2\log\Big(1 + \frac{\varepsilon}{\sqrt{9\alpha-3}}\Big).

Shape augmentation by B steps: :math:`z = h(\varepsilon, \alpha + B)\prod_{i=0}^{B-1} u_i^{1/(\alpha+i)}`,
:math:`u_i \sim U(0, 1)` (pathwise in α), and the correction uses π(ε; α + B), which tends to N(0, 1) as α + B
grows, so :math:`g_\mathrm{cor}` (and the bias of dropping it) shrinks with B.  A rate β enters as z/β
(pure pathwise; π does not depend on β).  Beta(a, b) = G₁/(G₁ + G₀) and Dirichlet(α) = G/ΣG use one RSVI
gamma per coordinate; the correction multiplies the total cost f(z) by each coordinate's score.

Sampling ε from π without a rejection loop: h is increasing in ε on ε > −√(9α−3), so the accepted ε is
exactly :math:`h^{-1}(G;\alpha) = \sqrt{9\alpha-3}\,\big((G/(\alpha-\frac13))^{1/3} - 1\big)` of a Gamma(α, 1)
draw G (``ctx.noise.standard_gamma``, which NumPy itself draws by Marsaglia–Tsang).  Every backend thus
sees the same ε on identical noise, under ``jax.jit`` too (docs/notes/reparam.md, tests check π by
running the acceptance–rejection sampler itself).

Hyperparameters: ``correction`` (True: unbiased; False: :math:`g_\mathrm{rep}` only, biased — see
declared with ``biased_when``) and ``boost`` = B (default 4, the value of the paper's sparse gamma DEF runs).
Requires f differentiable (and its value, for the correction).
Reference: C. Naesseth, F. Ruiz, S. Linderman, D. Blei, "Reparameterization Gradients through
Acceptance-Rejection Sampling Algorithms", AISTATS 2017 (arXiv:1610.05683).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from estimators._common import AUTODIFF
from estimators._gamma_compose import GammaPath, estimate_autodiff, estimate_numpy
from stochgrad import Hyper, get_backend, register_estimator

REFERENCE = "Naesseth, Ruiz, Linderman & Blei 2017 (AISTATS, arXiv:1610.05683), RSVI"
DISTRIBUTIONS = ("gamma", "beta", "dirichlet")
HYPERS = {
    "correction": Hyper(True, choices=(True, False), doc="add g_cor = f · ∂α log π(ε; α+B); False is biased"),
    "boost": Hyper(4, low=1, high=64, doc="shape augmentation steps B (α+B ≥ 1 keeps Marsaglia–Tsang valid)"),
}
NP = get_backend("numpy")


# -- Marsaglia–Tsang proposal, its inverse and the accepted-noise density (backend-generic) -----------------
def mt_h(B: Any, eps: Any, a: Any) -> Any:
    """h(ε, a) = (a − 1/3)(1 + ε/√(9a − 3))³."""
    d = a - 1.0 / 3.0
    return d * (1 + eps / B.xp.sqrt(9 * d)) ** 3


def mt_h_inv(B: Any, g: Any, a: Any) -> Any:
    """ε with h(ε, a) = g (g > 0)."""
    d = a - 1.0 / 3.0
    return B.xp.sqrt(9 * d) * ((g / d) ** (1.0 / 3.0) - 1)


def mt_dh_da(eps: Any, a: Any) -> Any:
    """∂h/∂a at fixed ε: w³ − (3/2) c ε w², c = 1/√(9a − 3), w = 1 + cε."""
    c = 1 / (9 * (a - 1.0 / 3.0)) ** 0.5
    w = 1 + c * eps
    return w**3 - 1.5 * c * eps * w**2


def log_pi(B: Any, eps: Any, a: Any) -> Any:
    """log π(ε; a): density of the accepted Marsaglia–Tsang noise."""
    d = a - 1.0 / 3.0
    w = 1 + eps / B.xp.sqrt(9 * d)
    h = d * w**3
    return (a - 1) * B.log(h) - h - B.lgamma(a) + 0.5 * B.log(d) + 2 * B.log(w)


def dlog_pi_da(eps: np.ndarray, a: np.ndarray) -> np.ndarray:
    """∂ log π(ε; a)/∂a (NumPy): log h + (a−1)h_a/h − h_a − ψ(a) + 1/(2d) − cε/(d w)."""
    d = a - 1.0 / 3.0
    c = 1 / np.sqrt(9 * d)
    w = 1 + c * eps
    h, ha = d * w**3, mt_dh_da(eps, a)
    return np.log(h) + (a - 1) * ha / h - ha - special.digamma(a) + 0.5 / d - c * eps / (d * w)


# -- noise and the boosted gamma -----------------------------------------------------------------------------
def _boost(hyper: dict) -> int:
    return int(hyper.get("boost", HYPERS["boost"].default))


def draw_noise(ctx: Any, a: Any) -> dict:
    """G ~ Gamma(α+B, 1) [R, L, *event], then u ~ U(0, 1) [B, R, L, *event]."""
    boost, shape = _boost(ctx.hyper), (ctx.R, ctx.L, *ctx.event_shape)
    return {"G": ctx.noise.standard_gamma(a + boost, shape), "u": ctx.noise.uniform((boost, *shape))}


def boosted_gamma(B: Any, a: Any, nz: dict, hyper: dict) -> tuple[Any, Any]:
    """(z, log π(ε; a+B)): z = h(ε, a+B) Π_i u_i^{1/(a+i)} differentiable in a, ε = h⁻¹(G; a+B) held fixed."""
    boost = _boost(hyper)
    eps = B.stop_gradient(mt_h_inv(B, nz["G"], B.stop_gradient(a) + boost))
    logu = sum(B.log(nz["u"][i]) / (a + i) for i in range(boost))
    return mt_h(B, eps, a + boost) * B.exp(logu), log_pi(B, eps, a + boost)


def boosted_gamma_np(a: np.ndarray, nz: dict, hyper: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy (z, dz/da, ∂a log π(ε; a+B)) for the boosted gamma at fixed (ε, u)."""
    boost = _boost(hyper)
    eps = mt_h_inv(NP, nz["G"], a + boost)
    h = mt_h(NP, eps, a + boost)
    logu = [np.log(nz["u"][i]) for i in range(boost)]
    z = h * np.exp(sum(lu / (a + i) for i, lu in enumerate(logu)))
    dz = z * (mt_dh_da(eps, a + boost) / h - sum(lu / (a + i) ** 2 for i, lu in enumerate(logu)))
    return z, dz, dlog_pi_da(eps, a + boost)


PATH = GammaPath(draw_noise, boosted_gamma_np, boosted_gamma)


def _correction(ctx: Any) -> bool:
    return bool(ctx.hyper.get("correction", HYPERS["correction"].default))


def rsvi_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """Per sample f'(z)ᵀ ∂z/∂θ (+ f(z) ∂θ log π(ε; α+B) with ``correction``), chain rule written out."""
    return estimate_numpy(ctx, PATH, _correction(ctx))


def rsvi_autodiff(ctx: Any) -> dict[str, Any]:
    """Autodiff of mean_L f(z(θ; ε, u)) + sg[f(z)] Σ log π(ε; α+B) (second term with ``correction``)."""
    return estimate_autodiff(ctx, PATH, _correction(ctx))


def _register() -> None:
    caps = dict(
        distributions=DISTRIBUTIONS,
        unbiased=True,  # declared biased at correction=False (biased_when)
        hyperparameters=HYPERS,
        reference=REFERENCE,
        requires=("differentiable",),
        family="rsvi",
        biased_when={"correction": False},
    )
    est = register_estimator("rsvi", **caps)
    est.implementation("numpy")(rsvi_numpy)
    est.implementation(*AUTODIFF)(rsvi_autodiff)


_register()
