"""beta(concentration1, concentration0): D independent Beta(a, b) coordinates on (0, 1).

Density z^{a-1} (1-z)^{b-1} / B(a, b) with a = concentration1, b = concentration0 (torch names).
Sampling: z = G₁ / (G₁ + G₀), G₁ ~ Gamma(a, 1), G₀ ~ Gamma(b, 1) from ``noise.standard_gamma``.
Closed forms: ``linear`` and ``quadratic`` (first two moments); other objectives (``cos``, ``exp_quad``)
use 1-D quadrature on (0, 1).  Draws round to 0 or 1 in float64 only for extreme parameters
(e.g. b = 0.01 puts half the mass within 1e-30 of 1); the shipped examples stay far from that.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from harness.problems.base import Distribution, ParamSpec


class Beta(Distribution):
    name = "beta"
    params = {
        "concentration1": ParamSpec("positive", 1.0, doc="a: exponent of z"),
        "concentration0": ParamSpec("positive", 1.0, doc="b: exponent of 1 - z"),
    }
    support = "unit"
    doc = "Beta(concentration1, concentration0) per coordinate"
    examples = (
        {
            "params": {"concentration1": 2.0, "concentration0": 3.0},
            "objective": "quadratic",
            "objective_params": {"k": 0.6},
            "dim": 2,
        },
        {
            "params": {"concentration1": [0.6, 1.5, 4.0], "concentration0": [0.8, 2.0, 1.2]},
            "objective": "cos",
            "objective_params": {"omega": 3.0},
            "dim": 3,
        },
        {"params": {"concentration1": 0.7, "concentration0": 1.3}, "objective": "linear", "dim": 2},
    )

    def sample(self, B, noise, P, L):
        a, b = P["concentration1"], P["concentration0"]
        R, D = a.shape
        g1 = noise.standard_gamma(a[:, None], (R, L, D))
        g0 = noise.standard_gamma(b[:, None], (R, L, D))
        return B.stop_gradient(g1 / (g1 + g0))

    def logpdf_elem(self, B, z, Pa):
        a, b = Pa["concentration1"], Pa["concentration0"]
        lbeta = B.lgamma(a) + B.lgamma(b) - B.lgamma(a + b)
        return (a - 1) * B.log(z) + (b - 1) * B.xp.log1p(-z) - lbeta

    def score_np(self, z, Pa):
        a, b = Pa["concentration1"], Pa["concentration0"]
        dab = special.digamma(a + b)
        return {
            "concentration1": np.log(z) - special.digamma(a) + dab,
            "concentration0": np.log1p(-z) - special.digamma(b) + dab,
        }

    def site_support(self, p):
        return (0.0, 1.0)

    # closed forms: per-site (E[g], {param: ∂E[g]/∂param}) from E[z] = a/s, E[z²] = a(a+1)/(s(s+1)), s = a+b
    def exact_linear(self, P, op):
        a, b, c = P["concentration1"], P["concentration0"], op["a"]
        s = a + b
        return c * a / s, {"concentration1": c * b / s**2, "concentration0": -c * a / s**2}

    def exact_quadratic(self, P, op):
        a, b, k = P["concentration1"], P["concentration0"], op["k"]
        s = a + b
        q = s * (s + 1)
        m2 = a * (a + 1) / q
        dm2_common = -a * (a + 1) * (2 * s + 1) / q**2
        return m2 - 2 * k * a / s + k**2, {
            "concentration1": (2 * a + 1) / q + dm2_common - 2 * k * b / s**2,
            "concentration0": dm2_common + 2 * k * a / s**2,
        }


DISTRIBUTION = Beta()
