"""mixture_normal(logits, locs, scales): per coordinate a mixture of K 1-D normals.

Each of the D coordinates is drawn independently from Σ_k w_k N(locs_k, scales_k²), w = softmax(logits);
the three parameters have shape [D, K] (site shape "K", option ``categories``, default 2; a K-vector
given without the option fixes K, so give K-vectors for all three parameters or set ``categories``).  The sample is one real per coordinate (event shape [D]), like
torch.distributions.MixtureSameFamily(Categorical(logits), Normal(locs, scales)).

Sampling: component c = argmax_k(logits_k + Gumbel_k) (Gumbel-max), then z = locs_c + scales_c ε.
Exact ground truth: every objective with a normal closed form (linear, quadratic, cos, exp_quad) is a
weighted sum of normal results: E = Σ_k w_k E_k, ∂locs_k = w_k ∂μ E_k, ∂scales_k = w_k ∂σ E_k,
∂logits_k = w_k (E_k - E).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from harness.backends import get_backend
from harness.problems.base import Distribution, ParamSpec
from harness.problems.dists.normal import DISTRIBUTION as NORMAL

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class MixtureNormal(Distribution):
    name = "mixture_normal"
    params = {
        "logits": ParamSpec("real", 0.0, site_shape="K", doc="component log-weights (softmax)"),
        "locs": ParamSpec("real", 0.0, site_shape="K", doc="component means"),
        "scales": ParamSpec("positive", 1.0, site_shape="K", doc="component standard deviations"),
    }
    support = "real"
    options = {"categories": 2}
    doc = "Σ_k softmax(logits)_k N(locs_k, scales_k^2) per coordinate; params [D, K]"
    examples = (
        {
            "params": {"logits": [0.0, 0.5], "locs": [-1.0, 1.5], "scales": [0.5, 1.0]},
            "objective": "quadratic",
            "objective_params": {"k": 0.5},
            "dim": 2,
        },
        {
            "params": {"logits": [0.2, -0.3, 0.0], "locs": [-2.0, 0.0, 2.0], "scales": [0.7, 0.5, 1.2]},
            "objective": "cos",
            "dim": 1,
        },
        {
            "params": {"logits": [[0.0, 1.0], [-0.5, 0.5]], "locs": [[-0.5, 1.0], [0.0, 2.0]], "scales": 0.8},
            "objective": "exp_quad",
            "options": {"categories": 2},
            "dim": 2,
        },
        {"params": {"logits": [1.0, -1.0], "locs": [0.5, -2.0], "scales": [1.0, 2.0]}, "objective": "linear", "dim": 2},
    )

    def validate(self, params):
        shapes = {k: v.shape for k, v in params.items()}
        if len(set(shapes.values())) > 1:
            return (
                f"logits, locs and scales need the same number of components K, got shapes {shapes}: give "
                "K-vectors for all three or the option categories=K"
            )
        return None

    def sample(self, B, noise, P, L):
        lg, mu, s = P["logits"], P["locs"], P["scales"]
        R, D, K = lg.shape
        g = noise.gumbel((R, L, D, K))
        onehot = B.one_hot(B.argmax(lg[:, None] + g, -1), K, g)
        eps = noise.normal((R, L, D))
        m = (onehot * mu[:, None]).sum(-1)
        sd = (onehot * s[:, None]).sum(-1)
        return B.stop_gradient(m + sd * eps)

    @staticmethod
    def component_logpdf(B, z, Pa):
        """log w_k + log N(z; locs_k, scales_k²): [..., D, K] for z [..., D]."""
        mu, s = Pa["locs"], Pa["scales"]
        u = (z[..., None] - mu) / s
        return B.log_softmax(Pa["logits"], -1) - 0.5 * u * u - B.log(s) - LOG_SQRT_2PI

    def logpdf_elem(self, B, z, Pa):
        return B.logsumexp(self.component_logpdf(B, z, Pa), -1)

    def score_np(self, z, Pa):
        lc = self.component_logpdf(get_backend("numpy"), np.asarray(z, dtype=np.float64), Pa)
        r = special.softmax(lc, axis=-1)  # responsibilities
        mu, s = Pa["locs"], Pa["scales"]
        d = np.asarray(z)[..., None] - mu
        return {
            "logits": r - special.softmax(Pa["logits"], axis=-1),
            "locs": r * d / s**2,
            "scales": r * (d * d / s**3 - 1 / s),
        }

    def site_support(self, p):
        lo = min(np.min(np.asarray(p["locs"]) - 40 * np.asarray(p["scales"])), 0.0)
        hi = max(np.max(np.asarray(p["locs"]) + 40 * np.asarray(p["scales"])), 0.0)
        return (float(lo), float(hi))

    def site_points(self, p):
        return sorted(float(x) for x in np.ravel(p["locs"]))

    def _mix(self, normal_exact, P, op):
        """Weighted normal closed forms: (E [D], grads [D, K])."""
        w = special.softmax(P["logits"], axis=-1)
        Ek, gk = normal_exact({"loc": P["locs"], "scale": P["scales"]}, op)
        Ek = np.broadcast_to(Ek, w.shape)
        E = (w * Ek).sum(-1)
        return E, {
            "logits": w * (Ek - E[..., None]),
            "locs": w * gk["loc"],
            "scales": w * gk["scale"],
        }

    def exact_linear(self, P, op):
        return self._mix(NORMAL.exact_linear, P, op)

    def exact_quadratic(self, P, op):
        return self._mix(NORMAL.exact_quadratic, P, op)

    def exact_cos(self, P, op):
        return self._mix(NORMAL.exact_cos, P, op)

    def exact_exp_quad(self, P, op):
        return self._mix(NORMAL.exact_exp_quad, P, op)


DISTRIBUTION = MixtureNormal()
