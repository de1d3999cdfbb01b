"""bernoulli(logits): D independent binary coordinates with P(z=1) = sigmoid(logits)."""

from __future__ import annotations

import numpy as np
from scipy import special

from harness.problems.base import Distribution, ParamSpec


class Bernoulli(Distribution):
    name = "bernoulli"
    params = {"logits": ParamSpec("real", 0.0)}
    aliases = {"probs": "logits"}
    support = "binary"
    discrete = True
    doc = "Bernoulli(sigmoid(logits)) per coordinate; suites may give probs instead of logits"
    examples = (
        {"params": {"probs": 0.3}, "objective": "bernoulli_toy", "dim": 2},
        {"params": {"logits": [-1.0, 0.0, 2.0]}, "objective": "quadratic", "objective_params": {"k": 0.2}, "dim": 3},
    )

    def convert(self, name, value):
        if name == "probs":
            return "logits", special.logit(value)
        return name, value

    def sample(self, B, noise, P, L):
        lg = P["logits"]
        R, D = lg.shape
        u = noise.uniform((R, L, D))
        p = B.sigmoid(lg[:, None])
        return B.stop_gradient(B.where(u < p, B.xp.ones_like(u), B.xp.zeros_like(u)))

    def logpdf_elem(self, B, z, Pa):
        lg = Pa["logits"]
        return z * B.log_sigmoid(lg) + (1 - z) * B.log_sigmoid(-lg)

    def score_np(self, z, Pa):
        return {"logits": z - special.expit(Pa["logits"])}

    def support_values(self, opts):
        return [np.float64(0.0), np.float64(1.0)]

    def enumerate_site(self, p):
        q = special.expit(p["logits"])
        return np.array([0.0, 1.0]), np.array([1 - q, q]), {"logits": np.array([-q * (1 - q), q * (1 - q)])}


DISTRIBUTION = Bernoulli()
