"""exponential(rate): D independent Exponential(λ) coordinates, density λ e^{-λz} on z > 0.

Sampling by inversion, z = -log(u)/λ, u ~ U(0, 1).  Every built-in objective has a closed form:
linear a/λ, quadratic 2/λ² - 2k/λ + k², cos λ²/(λ² + ω²) and exp_quad
E[e^{-kz²}] = λ √(π/(4k)) erfcx(λ / (2√k)).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from harness.problems.base import Distribution, ParamSpec

SQRT_PI = math.sqrt(math.pi)


class Exponential(Distribution):
    name = "exponential"
    params = {"rate": ParamSpec("positive", 1.0)}
    support = "positive"
    doc = "Exponential(rate) per coordinate"
    examples = (
        {"params": {"rate": 2.0}, "objective": "quadratic", "objective_params": {"k": 0.0}, "dim": 2},
        {"params": {"rate": [0.5, 2.0]}, "objective": "cos", "dim": 2},
        {"params": {"rate": [1.0, 3.0]}, "objective": "exp_quad", "dim": 2},
        {"params": {"rate": 0.8}, "objective": "linear", "dim": 1},
    )

    def sample(self, B, noise, P, L):
        lam = P["rate"]
        R, D = lam.shape
        u = noise.uniform((R, L, D))
        return B.stop_gradient(-B.log(u) / lam[:, None])

    def logpdf_elem(self, B, z, Pa):
        lam = Pa["rate"]
        return B.log(lam) - lam * z

    def score_np(self, z, Pa):
        return {"rate": 1.0 / Pa["rate"] - z}

    def site_support(self, p):
        return (0.0, math.inf)

    def exact_linear(self, P, op):
        lam, a = P["rate"], op["a"]
        return a / lam, {"rate": -a / lam**2}

    def exact_quadratic(self, P, op):
        lam, k = P["rate"], op["k"]
        return 2 / lam**2 - 2 * k / lam + k**2, {"rate": -4 / lam**3 + 2 * k / lam**2}

    def exact_cos(self, P, op):
        lam, w = P["rate"], op["omega"]
        den = lam**2 + w**2
        return lam**2 / den, {"rate": 2 * lam * w**2 / den**2}

    def exact_exp_quad(self, P, op):
        # E = λ √π c erfcx(λc), c = 1/(2√k);  erfcx'(x) = 2x erfcx(x) - 2/√π
        lam, k = P["rate"], op["k"]
        c = 0.5 / np.sqrt(k)
        x = lam * c
        ex = special.erfcx(x)
        val = lam * SQRT_PI * c * ex
        return val, {"rate": SQRT_PI * c * ex + lam * SQRT_PI * c * c * (2 * x * ex - 2 / SQRT_PI)}


DISTRIBUTION = Exponential()
