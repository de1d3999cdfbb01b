"""mvn(loc, scale_tril): one D-dimensional Gaussian N(loc, Σ), Σ = L Lᵀ (torch MultivariateNormal).

``loc`` has shape [D]; ``scale_tril`` (site shape "D") has shape [D, D], lower-triangular with a positive
diagonal.  Entries above the diagonal must be 0 (a validation error otherwise); every formula uses only
the lower triangle, so gradients w.r.t. upper entries are exactly 0.  A scalar ``scale_tril`` s means
s·I and a [D] vector v means diag(v) (see Problem._params).

Unlike the other families this is not a product of independent sites: the coordinates are correlated.
``logpdf_elem`` therefore returns the chain-rule terms of the joint density (w = L⁻¹(z - μ)):
term_d = -w_d²/2 - log L_dd - log √(2π), which sum to log N(z; μ, Σ) but are not marginal densities.
Exact ground truth uses closed forms only (no per-site quadrature): for a separable objective
E[Σ_d g(z_d)] depends on L only through the marginal standard deviations s_d = √Σ_dd = ‖L[d, :d+1]‖,
so every normal closed form (linear, quadratic, cos, exp_quad) carries over with
∂E/∂L_dj = ∂E/∂s_d · L_dj / s_d (j ≤ d).
"""

from __future__ import annotations

import math

import numpy as np

from harness.backends import get_backend
from harness.problems.base import Distribution, ParamSpec
from harness.problems.dists.normal import DISTRIBUTION as NORMAL

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def forward_solve(B, Lm, x):
    """w = L⁻¹ x for lower-triangular L [..., D, D] and x [..., D] (broadcast), by substitution."""
    D = x.shape[-1]
    ws = []
    for d in range(D):
        acc = x[..., d]
        for j in range(d):
            acc = acc - Lm[..., d, j] * ws[j]
        ws.append(acc / Lm[..., d, d])
    return B.stack(ws, -1)


def backward_solve_T(B, Lm, w):
    """v = L⁻ᵀ w for lower-triangular L (i.e. an upper-triangular solve with Lᵀ)."""
    D = w.shape[-1]
    vs: list = [None] * D
    for d in reversed(range(D)):
        acc = w[..., d]
        for j in range(d + 1, D):
            acc = acc - Lm[..., j, d] * vs[j]
        vs[d] = acc / Lm[..., d, d]
    return B.stack(vs, -1)


def matvec(Lm, eps):
    """L ε for L [..., D, D] and ε [..., D] with broadcasting batch axes."""
    return (Lm * eps[..., None, :]).sum(-1)


class MVN(Distribution):
    name = "mvn"
    params = {
        "loc": ParamSpec("real", 0.0, doc="mean vector [D]"),
        "scale_tril": ParamSpec("real", 1.0, site_shape="D", doc="Cholesky factor L [D, D], Σ = L Lᵀ"),
    }
    support = "real"
    doc = "N(loc, L L^T) over the D coordinates; scale_tril lower-triangular, positive diagonal"
    # no linear example: its scale_tril gradient is exactly 0, which makes power checks of noisy
    # estimators on it needlessly expensive (the linear closed form is tested in tests/test_dists_loc_scale.py)
    examples = (
        {"params": {"loc": [0.5, -0.3], "scale_tril": [[1.0, 0.0], [0.5, 0.8]]}, "objective": "quadratic", "dim": 2},
        {
            "params": {"loc": [0.0, 1.0, -0.5], "scale_tril": [[0.7, 0.0, 0.0], [0.3, 0.9, 0.0], [-0.4, 0.2, 0.6]]},
            "objective": "cos",
            "dim": 3,
        },
        {"params": {"loc": [0.3, -0.2], "scale_tril": [[0.8, 0.0], [-0.5, 0.6]]}, "objective": "exp_quad", "dim": 2},
    )

    def validate(self, params):
        Lm = params["scale_tril"]
        if np.any(np.triu(Lm, 1) != 0):
            return f"scale_tril must be lower-triangular (entries above the diagonal 0), got {Lm.tolist()}"
        if np.any(np.diag(Lm) <= 0):
            return f"scale_tril needs a positive diagonal, got {np.diag(Lm).tolist()}"
        return None

    @staticmethod
    def rsample(B, Pa, eps):
        """z = μ + tril(L) ε, differentiable in μ and L (params aligned to the standard normal noise ε)."""
        return Pa["loc"] + matvec(B.xp.tril(Pa["scale_tril"]), eps)

    def sample(self, B, noise, P, L):
        mu = P["loc"]
        R, D = mu.shape
        eps = noise.normal((R, L, D))
        return B.stop_gradient(mu[:, None] + matvec(B.xp.tril(P["scale_tril"])[:, None], eps))

    def logpdf_elem(self, B, z, Pa):
        Lm = Pa["scale_tril"]
        w = forward_solve(B, Lm, z - Pa["loc"])
        D = z.shape[-1]
        logdiag = B.stack([B.log(Lm[..., d, d]) for d in range(D)], -1)
        return -0.5 * w * w - logdiag - LOG_SQRT_2PI

    def score_np(self, z, Pa):
        B = get_backend("numpy")
        Lm = Pa["scale_tril"]
        w = forward_solve(B, Lm, z - Pa["loc"])
        v = backward_solve_T(B, Lm, w)  # Σ⁻¹ (z - μ)
        inv_diag = 1.0 / np.diagonal(Lm, axis1=-2, axis2=-1)
        eye = np.eye(z.shape[-1])
        return {"loc": v, "scale_tril": np.tril(v[..., :, None] * w[..., None, :]) - inv_diag[..., None] * eye}

    def site_support(self, p):
        raise NotImplementedError("mvn has correlated coordinates: no per-site quadrature; add an exact_<objective>")

    # closed forms via the normal marginals N(μ_d, Σ_dd)
    def _marginal(self, normal_exact, P, op):
        mu, Lm = P["loc"], np.tril(P["scale_tril"])
        s = np.sqrt((Lm * Lm).sum(-1))
        val, g = normal_exact({"loc": mu, "scale": s}, op)
        g_s = np.broadcast_to(g["scale"], s.shape)
        return val, {"loc": g["loc"], "scale_tril": g_s[:, None] * Lm / s[:, None]}

    def exact_linear(self, P, op):
        return self._marginal(NORMAL.exact_linear, P, op)

    def exact_quadratic(self, P, op):
        return self._marginal(NORMAL.exact_quadratic, P, op)

    def exact_cos(self, P, op):
        return self._marginal(NORMAL.exact_cos, P, op)

    def exact_exp_quad(self, P, op):
        return self._marginal(NORMAL.exact_exp_quad, P, op)


DISTRIBUTION = MVN()
