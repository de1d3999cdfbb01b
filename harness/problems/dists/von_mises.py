"""von_mises(loc, concentration): D independent angles on the fixed support [-π, π).

Density e^{κ cos(z - μ)} / (2π I₀(κ)) on [-π, π) (μ = loc may be any real; draws are wrapped into
[-π, π), as torch.distributions.VonMises does).  The support does not move with loc, so every
estimator sees the same distribution: the score-function identity, 1-D quadrature and the implicit
CDF F(z) = ∫_{-π}^z p all hold for non-periodic objectives (``quadratic``, ``linear``, ``exp_quad``) too.

Sampling (no library offers a von Mises sampler on all three backends): Best & Fisher (1979)
rejection from a wrapped-Cauchy envelope, vectorized and jit-safe with a fixed number
32 of proposals per draw (4 noise calls of 8), keeping the first accepted one.  Each proposal is accepted
with probability >= 0.657 for every κ, so all 32 are rejected with probability <= 0.343^32 < 2e-15;
then the last proposal is kept (a bias below float64 resolution of any probability).
log I₀(κ) comes from ``Backend.log_i0`` (log i0e(κ) + κ, stable for large κ).
Closed form: ``cos`` with integer ω, E[cos ωz] = cos(ωμ) I_ω(κ)/I₀(κ) (non-integer ω: quadrature);
everything else by quadrature over [-π, π).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from harness.problems.base import Distribution, ParamSpec

ROUNDS, PER_ROUND = 4, 8  # 32 proposals per draw
LOG_2PI = math.log(2 * math.pi)


def best_fisher(B, noise, kappa, shape, rounds=ROUNDS, per_round=PER_ROUND):
    """Centred von Mises draws in [-π, π] of ``shape``; ``kappa`` broadcasts against ``shape``.

    ``rounds`` blocks of ``per_round`` proposals, each block drawn with one noise call (few RNG ops to
    compile on JAX); the first accepted proposal is kept, the last one if none is.
    """
    xp = B.xp
    small = kappa < 1e-5
    kk = B.where(small, 1 + 0 * kappa, kappa)
    tau = 1 + xp.sqrt(1 + 4 * kk * kk)
    rho = (tau - xp.sqrt(2 * tau)) / (2 * kk)
    r = B.where(small, 1 / kappa + kappa, (1 + rho * rho) / (2 * rho))  # small κ: Taylor form
    sign = xp.sign(noise.uniform(shape) - 0.5)
    x = done = None
    for _ in range(rounds):
        u = noise.uniform((2, per_round, *shape))
        w = xp.cos(math.pi * u[0])
        f = (1 + r * w) / (r + w)
        c = kappa * (r - f)
        accept = (c * (2 - c) - u[1] > 0) | (B.log(c / u[1]) + 1 - c >= 0)
        first = f[per_round - 1]  # the block's first accepted proposal (its last if none is accepted)
        for i in range(per_round - 2, -1, -1):
            first = B.where(accept[i], f[i], first)
        hit = accept[0]
        for i in range(1, per_round):
            hit = hit | accept[i]
        if x is None:
            x, done = first, hit
        else:
            x = B.where(done, x, first)
            done = done | hit
    return sign * xp.arccos(xp.clip(x, -1.0, 1.0) if B.name != "torch" else x.clamp(-1.0, 1.0))


class VonMises(Distribution):
    name = "von_mises"
    params = {"loc": ParamSpec("real", 0.0), "concentration": ParamSpec("positive", 1.0, doc="κ")}
    support = "circle"
    doc = "von Mises(loc, concentration) per coordinate on the fixed support [-π, π)"
    examples = (
        {"params": {"loc": 0.5, "concentration": 2.0}, "objective": "cos", "dim": 2},
        {
            "params": {"loc": [-0.5, 1.0, 2.5], "concentration": [0.5, 4.0, 1.5]},
            "objective": "quadratic",
            "objective_params": {"k": 0.3},
            "dim": 3,
        },
        {
            "params": {"loc": [1.0, -0.5], "concentration": [3.0, 0.8]},
            "objective": "exp_quad",
            "objective_params": {"k": 0.5},
            "dim": 2,
        },
    )

    def sample(self, B, noise, P, L):
        loc, k = P["loc"], P["concentration"]
        R, D = loc.shape
        x = best_fisher(B, noise, k[:, None], (R, L, D))
        z = B.xp.remainder(x + loc[:, None] + math.pi, 2 * math.pi) - math.pi
        return B.stop_gradient(z)

    def logpdf_elem(self, B, z, Pa):
        k = Pa["concentration"]
        return k * B.xp.cos(z - Pa["loc"]) - LOG_2PI - B.log_i0(k)

    def score_np(self, z, Pa):
        mu, k = Pa["loc"], Pa["concentration"]
        return {"loc": k * np.sin(z - mu), "concentration": np.cos(z - mu) - special.i1e(k) / special.i0e(k)}

    def site_support(self, p):
        return (-math.pi, math.pi)

    def site_points(self, p):
        return [math.remainder(p["loc"], 2 * math.pi)]

    def exact_cos(self, P, op):
        mu, k, w = P["loc"], P["concentration"], op["omega"]
        if float(w) != round(float(w)):
            return _quad_cos(self, mu, k, float(w))
        n = abs(int(round(float(w))))
        i0, i_n = special.ive(0, k), special.ive(n, k)
        a_n = i_n / i0
        # d/dκ I_n = (I_{n-1} + I_{n+1})/2, so d/dκ (I_n/I_0) = (I_{n-1}+I_{n+1})/(2 I_0) - A_n A_1
        da_n = (special.ive(n - 1, k) + special.ive(n + 1, k)) / (2 * i0) - a_n * special.ive(1, k) / i0
        c = np.cos(w * mu)
        return c * a_n, {"loc": -w * np.sin(w * mu) * a_n, "concentration": c * da_n}


def _quad_cos(dist, mu, k, w):
    """Per-site quadrature for cos with non-integer ω (periodicity, hence the Bessel form, is lost)."""
    mu, k = np.broadcast_arrays(np.asarray(mu, np.float64), np.asarray(k, np.float64))
    val, g_mu, g_k = (np.empty(mu.shape) for _ in range(3))
    opts = {"epsabs": 1e-12, "epsrel": 1e-10, "limit": 400}
    for i in np.ndindex(mu.shape):
        m, kk = float(mu[i]), float(k[i])
        dens = lambda x, m=m, kk=kk: math.exp(kk * (math.cos(x - m) - 1)) / (2 * math.pi * special.i0e(kk))
        pts = [math.remainder(m, 2 * math.pi)]
        val[i] = integrate.quad(lambda x: math.cos(w * x) * dens(x), -math.pi, math.pi, points=pts, **opts)[0]
        g_mu[i] = integrate.quad(
            lambda x: math.cos(w * x) * kk * math.sin(x - m) * dens(x), -math.pi, math.pi, points=pts, **opts
        )[0]
        a1 = special.i1e(kk) / special.i0e(kk)
        g_k[i] = integrate.quad(
            lambda x: math.cos(w * x) * (math.cos(x - m) - a1) * dens(x), -math.pi, math.pi, points=pts, **opts
        )[0]
    return val, {"loc": g_mu, "concentration": g_k}


DISTRIBUTION = VonMises()
