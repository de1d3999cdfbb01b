"""categorical(logits): D independent sites, each one-hot over K categories (option ``categories``)."""

from __future__ import annotations

import numpy as np
from scipy import special

from harness.problems.base import Distribution, ParamSpec


class Categorical(Distribution):
    name = "categorical"
    params = {"logits": ParamSpec("real", 0.0, site_shape="K")}
    aliases = {"probs": "logits"}
    support = "onehot"
    discrete = True
    options = {"categories": 3}
    doc = "Categorical(softmax(logits)) per site, samples one-hot [D, K]; suites may give probs"
    examples = (
        {"params": {"logits": [0.0, 1.0, 2.0]}, "objective": "categorical_target", "dim": 2},
        {"params": {"logits": [0.5, -0.5, 0.0, 1.0, -1.0]}, "objective": "categorical_target", "dim": 1},
    )

    def convert(self, name, value):
        if name == "probs":
            return "logits", np.log(value)
        return name, value

    def event_shape(self, dim, opts):
        return (dim, self.categories(opts))

    def sample(self, B, noise, P, L):
        lg = P["logits"]
        R, D, K = lg.shape
        g = noise.gumbel((R, L, D, K))
        idx = B.argmax(lg[:, None] + g, -1)
        return B.stop_gradient(B.one_hot(idx, K, g))

    def logpdf_elem(self, B, z, Pa):
        return (z * B.log_softmax(Pa["logits"], -1)).sum(-1)

    def score_np(self, z, Pa):
        return {"logits": z - special.softmax(Pa["logits"], axis=-1)}

    def support_values(self, opts):
        return list(np.eye(self.categories(opts)))

    def enumerate_site(self, p):
        lg = np.asarray(p["logits"], dtype=np.float64)
        q = special.softmax(lg)
        K = q.size
        return np.eye(K), q, {"logits": q[:, None] * (np.eye(K) - q[None, :])}


DISTRIBUTION = Categorical()
