"""dirichlet(concentration): D independent sites, each a point on the (K-1)-simplex.

``concentration`` has shape [D, K] (site shape "K", option ``categories``, default 3; a K-vector given
without the option fixes K); samples have event shape [D, K] like ``categorical``.  Density per site
Γ(α₀) / Π_k Γ(α_k) · Π_k z_k^{α_k - 1}, α₀ = Σ_k α_k.
Sampling: normalized standard gammas, z_k = G_k / Σ_j G_j, G_k ~ Gamma(α_k, 1).
Exact ground truth in closed form (a simplex site is not 1-D, so there is no quadrature fallback):
``categorical_target`` (Σ_k (z_k - t_k)², from E z_k = α_k/α₀, E z_k² = α_k(α_k+1)/(α₀(α₀+1))) and
``simplex_power`` (Σ_k z_k^p, from E z_k^p = Γ(α_k+p)Γ(α₀) / (Γ(α_k)Γ(α₀+p))).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from harness.problems.base import Distribution, ParamSpec


class Dirichlet(Distribution):
    name = "dirichlet"
    params = {"concentration": ParamSpec("positive", 1.0, site_shape="K", doc="α, one per category")}
    support = "simplex"
    options = {"categories": 3}
    doc = "Dirichlet(concentration) per site, samples [D, K] on the simplex"
    examples = (
        {"params": {"concentration": [2.0, 1.0, 3.0]}, "objective": "categorical_target", "dim": 2},
        {
            "params": {"concentration": [0.5, 1.0, 2.0]},
            "objective": "simplex_power",
            "objective_params": {"p": 2.5},
            "dim": 1,
        },
        {
            "params": {"concentration": [[1.2, 0.7], [4.0, 2.5]]},
            "objective": "categorical_target",
            "objective_params": {"target": [0.8, 0.2]},
            "options": {"categories": 2},
            "dim": 2,
        },
    )

    def event_shape(self, dim, opts):
        return (dim, self.categories(opts))

    def sample(self, B, noise, P, L):
        a = P["concentration"]
        R, D, K = a.shape
        g = noise.standard_gamma(a[:, None], (R, L, D, K))
        return B.stop_gradient(g / B.sum(g, -1)[..., None])

    def logpdf_elem(self, B, z, Pa):
        a = Pa["concentration"]
        return B.sum((a - 1) * B.log(z), -1) + B.lgamma(B.sum(a, -1)) - B.sum(B.lgamma(a), -1)

    def score_np(self, z, Pa):
        a = Pa["concentration"]
        return {"concentration": np.log(z) - special.digamma(a) + special.digamma(a.sum(-1))[..., None]}

    # closed forms: per-site value [D] and gradient [D, K]
    def exact_categorical_target(self, P, op):
        a, t = P["concentration"], np.asarray(op["target"], dtype=np.float64)
        a0 = a.sum(-1, keepdims=True)
        q = a0 * (a0 + 1)
        m2 = a * (a + 1) / q
        val = (m2 - 2 * t * a / a0 + t**2).sum(-1)
        grad = (
            (2 * a + 1) / q
            - (2 * a0 + 1) / q**2 * (a * (a + 1)).sum(-1, keepdims=True)
            - 2 * t / a0
            + 2 * (t * a).sum(-1, keepdims=True) / a0**2
        )
        return val, {"concentration": grad}

    def exact_simplex_power(self, P, op):
        a, p = P["concentration"], float(op["p"])
        a0 = a.sum(-1, keepdims=True)
        m = np.exp(special.gammaln(a + p) - special.gammaln(a) + special.gammaln(a0) - special.gammaln(a0 + p))
        grad = m * (special.digamma(a + p) - special.digamma(a)) + (
            special.digamma(a0) - special.digamma(a0 + p)
        ) * m.sum(-1, keepdims=True)
        return m.sum(-1), {"concentration": grad}


DISTRIBUTION = Dirichlet()
