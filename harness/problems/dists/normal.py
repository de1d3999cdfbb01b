"""normal(loc, scale): diagonal Gaussian with D independent coordinates."""

from __future__ import annotations

import math

import numpy as np

from harness.problems.base import Distribution, ParamSpec

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Normal(Distribution):
    name = "normal"
    params = {"loc": ParamSpec("real", 0.0), "scale": ParamSpec("positive", 1.0)}
    support = "real"
    doc = "N(loc, scale^2) per coordinate"
    examples = (
        {"params": {"loc": 0.5, "scale": 1.5}, "objective": "quadratic", "dim": 2},
        {"params": {"loc": [0.0, 1.0, -0.5], "scale": [0.5, 1.0, 2.0]}, "objective": "cos", "dim": 3},
        {"params": {"loc": 0.3, "scale": 0.8}, "objective": "exp_quad", "dim": 2},
        {"params": {"loc": -1.0, "scale": 2.0}, "objective": "linear", "dim": 2},
    )

    def sample(self, B, noise, P, L):
        R, D = P["loc"].shape
        eps = noise.normal((R, L, D))
        return B.stop_gradient(P["loc"][:, None] + P["scale"][:, None] * eps)

    def logpdf_elem(self, B, z, Pa):
        u = (z - Pa["loc"]) / Pa["scale"]
        return -0.5 * u * u - B.log(Pa["scale"]) - LOG_SQRT_2PI

    def score_np(self, z, Pa):
        mu, s = Pa["loc"], Pa["scale"]
        d = z - mu
        return {"loc": d / s**2, "scale": d * d / s**3 - 1.0 / s}

    def site_support(self, p):
        return (p["loc"] - 40 * p["scale"], p["loc"] + 40 * p["scale"])

    def site_points(self, p):
        return [p["loc"]]

    # closed forms: per-site (E[g], {param: ∂E[g]/∂param})
    def exact_quadratic(self, P, op):
        mu, s, k = P["loc"], P["scale"], op["k"]
        return (mu - k) ** 2 + s**2, {"loc": 2 * (mu - k), "scale": 2 * s}

    def exact_linear(self, P, op):
        mu, a = P["loc"], op["a"]
        return a * mu, {"loc": np.full_like(mu, a), "scale": np.zeros_like(mu)}

    def exact_cos(self, P, op):
        mu, s, w = P["loc"], P["scale"], op["omega"]
        damp = np.exp(-0.5 * w**2 * s**2)
        return np.cos(w * mu) * damp, {
            "loc": -w * np.sin(w * mu) * damp,
            "scale": -(w**2) * s * np.cos(w * mu) * damp,
        }

    def exact_exp_quad(self, P, op):
        mu, s, k = P["loc"], P["scale"], op["k"]
        q = 1 + 2 * k * s**2
        val = q**-0.5 * np.exp(-k * mu**2 / q)
        return val, {"loc": val * (-2 * k * mu / q), "scale": val * (-0.5 / q + k * mu**2 / q**2) * 4 * k * s}


DISTRIBUTION = Normal()
