"""gamma(concentration, rate): D independent Gamma(α, β) coordinates, density β^α z^{α-1} e^{-βz}/Γ(α)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from harness.problems.base import Distribution, ParamSpec


class Gamma(Distribution):
    name = "gamma"
    params = {"concentration": ParamSpec("positive", 1.0), "rate": ParamSpec("positive", 1.0)}
    support = "positive"
    doc = "Gamma(concentration, rate) per coordinate"
    examples = (
        {
            "params": {"concentration": 2.0, "rate": 1.5},
            "objective": "quadratic",
            "objective_params": {"k": 1.0},
            "dim": 2,
        },
        {"params": {"concentration": 0.5, "rate": 1.0}, "objective": "cos", "dim": 2},
        {"params": {"concentration": 3.0, "rate": 2.0}, "objective": "exp_quad", "dim": 2},
    )

    def sample(self, B, noise, P, L):
        a, b = P["concentration"], P["rate"]
        R, D = a.shape
        g = noise.standard_gamma(a[:, None], (R, L, D))
        return B.stop_gradient(g / b[:, None])

    def logpdf_elem(self, B, z, Pa):
        a, b = Pa["concentration"], Pa["rate"]
        return a * B.log(b) - B.lgamma(a) + (a - 1) * B.log(z) - b * z

    def score_np(self, z, Pa):
        a, b = Pa["concentration"], Pa["rate"]
        return {"concentration": np.log(b) - special.digamma(a) + np.log(z), "rate": a / b - z}

    def site_support(self, p):
        return (0.0, math.inf)

    def exact_linear(self, P, op):
        a, b, c = P["concentration"], P["rate"], op["a"]
        return c * a / b, {"concentration": c / b, "rate": -c * a / b**2}

    def exact_quadratic(self, P, op):
        a, b, k = P["concentration"], P["rate"], op["k"]
        val = a * (a + 1) / b**2 - 2 * k * a / b + k**2
        return val, {
            "concentration": (2 * a + 1) / b**2 - 2 * k / b,
            "rate": -2 * a * (a + 1) / b**3 + 2 * k * a / b**2,
        }

    def exact_cos(self, P, op):
        # characteristic function: E[e^{iωz}] = (1 - iω/β)^{-α}
        a, b, w = P["concentration"], P["rate"], op["omega"]
        base = 1 - 1j * w / b
        phi = base ** (-a)
        return phi.real, {
            "concentration": (-np.log(base) * phi).real,
            "rate": (-a * base ** (-a - 1) * (1j * w / b**2)).real,
        }


DISTRIBUTION = Gamma()
