r"""ARMS (Dimitriev & Zhou 2021): antithetic-REINFORCE-multi-sample gradients for binary latents.

K = L negatively correlated samples per estimate, :math:`b_k = \mathbf 1[u_k < p]` with p = σ(θ) per coordinate,
where the uniforms :math:`u_1..u_K` of each coordinate are drawn from a copula (independently across
coordinates), and the leave-one-out estimator is debiased for their correlation:

.. math::
    \hat g = \frac{1}{K-1}\sum_{k=1}^K \big(f(b_k) - \bar f\big)\,(b_k - p)\;
             \frac{p(1-p)}{p - P(b_j = b_k = 1)},\qquad \bar f = \frac1K \sum_k f(b_k).

Per coordinate, :math:`\mathbb E[(f(b_k) - f(b_j))(b_{kd} - p_d)] = (p_d - P(b_{jd} = b_{kd} = 1))\,
\mathbb E[f(b)|_{b_d=1} - f(b)|_{b_d=0}]`, so the factor makes the estimator unbiased; with independent samples it
is K/(K−1) × RLOO's.  Copulas (hyperparameter ``copula``):

* ``dirichlet`` (default, the paper's ARMS): :math:`d \sim \mathrm{Dir}(\mathbf 1_K)` (normalized exponentials
  :math:`E = -\log v`), :math:`u_k = (1 - d_k)^{K-1}` (each ~ U(0, 1)); the pair CDF is
  :math:`C(a, a) = \max(2a^{1/(K-1)} - 1, 0)^{K-1}`.  For p ≥ ½ the reflected uniforms 1 − u are used (the
  reference code's choice: the copula's negative dependence sits in its lower tail), so the denominator is
  :math:`m - C(m, m)` with :math:`m = \min(p, 1-p)`.
* ``gaussian`` (the paper's ARMS-N): equicorrelated normals :math:`g = \sqrt{K/(K-1)}\,(\varepsilon - \bar\varepsilon)`
  (correlation −1/(K−1), the most negative possible), :math:`b_k = \mathbf 1[g_k < \Phi^{-1}(p)]`; the denominator
  is :math:`p - \Phi_2(h, h; \rho) = 2\,T(h, a)` with Owen's T, :math:`h = \Phi^{-1}(p)`,
  :math:`a = \sqrt{(1-\rho)/(1+\rho)} = \sqrt{K/(K-2)}`, computed by 64-point Gauss–Legendre quadrature of
  :math:`T(h, a) = \frac1{2\pi}\int_0^a e^{-h^2(1+x^2)/2}/(1+x^2)\,dx` (PyTorch and JAX have no Owen's T; the tests
  check it against ``scipy.special.owens_t``).

For K = 2 both copulas are antithetic (:math:`u_2 = 1 - u_1`), the factor is σ(|θ|), and ARMS is DisARM.  The
reference code adds 1e-6 to the denominator; here it is exact.

Cost: L = K samples, K evaluations of f per L-sample estimate (f only, no derivative).  Needs K >= 2.  Unbiased.
One backend-generic formula serves NumPy, PyTorch and JAX.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import stochgrad as sg
from estimators._common import bcast

REF_ARMS = (
    "Dimitriev & Zhou 2021 (ICML, arXiv:2105.14141), ARMS: antithetic-REINFORCE-multi-sample gradient for binary "
    "variables"
)
COPULAS = ("dirichlet", "gaussian")
HYPER = {"copula": sg.Hyper("dirichlet", choices=COPULAS, doc="copula of the K uniforms: dirichlet or gaussian")}
GL_NODES, GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


def owens_t(ctx: Any, h: Any, a: float) -> Any:
    """Owen's T(h, a) for a > 0 (elementwise in h) by Gauss–Legendre quadrature on [0, a]."""
    B = ctx.B
    x = B.asarray(a * (GL_NODES + 1) / 2, ctx.dtype, ctx.device)  # nodes on [0, a]
    w = B.asarray(a / 2 * GL_WEIGHTS, ctx.dtype, ctx.device)
    q = 1 + x * x
    return (w * B.exp(-0.5 * h[..., None] ** 2 * q) / q).sum(-1) / (2 * math.pi)


def dirichlet_pairs(ctx: Any, p: Any, K: int) -> tuple[Any, Any]:
    """(b [R, K, D], p − P(b_j = b_k = 1) [R, 1, D]) under the Dirichlet copula."""
    B = ctx.B
    E = -B.log(ctx.noise.uniform((ctx.R, K, ctx.dim)))
    uc = (1 - E / E.sum(1, keepdims=True)) ** (K - 1)
    low = p < 0.5
    u = B.where(low, uc, 1 - uc)
    b = B.where(u < p, B.xp.ones_like(u), B.xp.zeros_like(u))
    m = B.where(low, p, 1 - p)
    joint = B.xp.maximum(2 * m ** (1.0 / (K - 1)) - 1, 0 * m) ** (K - 1)
    return b, m - joint


def gaussian_pairs(ctx: Any, th: Any, K: int) -> tuple[Any, Any]:
    """(b [R, K, D], p − P(b_j = b_k = 1) [R, 1, D]) under the equicorrelated Gaussian copula."""
    B = ctx.B
    eps = ctx.noise.normal((ctx.R, K, ctx.dim))
    g = (eps - eps.mean(1, keepdims=True)) * math.sqrt(K / (K - 1))
    # h = Φ⁻¹(σ(θ)), from the smaller tail for accuracy: Φ⁻¹(1 − q) = −Φ⁻¹(q)
    h = B.where(th < 0, B.ndtri(B.sigmoid(th)), -B.ndtri(B.sigmoid(-th)))
    b = B.where(g < h, B.xp.ones_like(g), B.xp.zeros_like(g))
    if K == 2:  # ρ = −1: P(b_1 = b_2 = 1) = max(2p − 1, 0), so p − P = min(p, 1 − p)
        return b, B.sigmoid(-B.xp.abs(th))
    return b, 2 * owens_t(ctx, h, math.sqrt(K / (K - 2)))


def arms(ctx: Any) -> dict[str, Any]:
    """ARMS: (1/(K−1)) Σ_k (f(b_k) − f̄)(b_k − p) p(1−p) / (p − P(b_j = b_k = 1))."""
    B, K = ctx.B, ctx.L
    th = ctx.batched()["logits"][:, None]  # [R, 1, D]
    p = B.sigmoid(th)
    if ctx.hyper["copula"] == "dirichlet":
        b, denom = dirichlet_pairs(ctx, p, K)
    else:
        b, denom = gaussian_pairs(ctx, th, K)
    fb = ctx.f(b)  # [R, K]
    w = fb - fb.mean(1, keepdims=True)
    debias = p * (1 - p) / denom
    return {"logits": (bcast(w, b) * (b - p)).sum(1) / (K - 1) * debias[:, 0]}


def _register() -> None:
    est = sg.register_estimator(
        "arms",
        distributions=("bernoulli",),
        unbiased=True,
        min_samples=2,
        hyperparameters=HYPER,
        family="arm",
        reference=REF_ARMS,
    )
    est.implementation("numpy", "torch", "jax")(arms)


_register()
