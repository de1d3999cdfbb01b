"""student_t(df, loc, scale): D independent Student-t coordinates (torch.distributions.StudentT).

Density per coordinate, t = (z - loc) / scale, ν = df:

    p(z) = Γ((ν+1)/2) / (Γ(ν/2) √(νπ) σ) · (1 + t²/ν)^{-(ν+1)/2}

Sampling: z = loc + scale · ε · √(ν / (2G)), ε ~ N(0, 1), G ~ Gamma(ν/2, 1) (χ²_ν = 2G).
Closed forms: ``linear`` (needs ν > 1), ``quadratic`` (needs ν > 2; E = (μ-k)² + σ²ν/(ν-2)) and ``cos``
through the characteristic function E[cos ωz] = cos(ωμ) K_v(x) x^v / (Γ(v) 2^{v-1}), v = ν/2,
x = √ν |ω| σ; its df-derivative needs ∂K_v/∂v, taken from the integral representation
∂_v K_v(x) = ∫_0^∞ e^{-x cosh t} t sinh(vt) dt (smooth, doubly-exponentially decaying: ~1e-13 accurate).
``exp_quad`` uses 1-D quadrature over the real line.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from harness.problems.base import Distribution, ParamSpec

LOG_PI = math.log(math.pi)


class StudentT(Distribution):
    name = "student_t"
    params = {
        "df": ParamSpec("positive", 5.0, doc="degrees of freedom ν"),
        "loc": ParamSpec("real", 0.0),
        "scale": ParamSpec("positive", 1.0),
    }
    support = "real"
    doc = "Student-t(df, loc, scale) per coordinate; quadratic needs df > 2, linear df > 1"
    examples = (
        {"params": {"df": 6.0, "loc": 0.5, "scale": 1.0}, "objective": "quadratic", "dim": 2},
        {"params": {"df": [3.0, 5.0], "loc": [0.0, 1.0], "scale": [0.5, 1.5]}, "objective": "cos", "dim": 2},
        {"params": {"df": 4.0, "loc": 0.3, "scale": 0.8}, "objective": "exp_quad", "dim": 1},
        {"params": {"df": 5.0, "loc": -1.0, "scale": 2.0}, "objective": "linear", "dim": 2},
    )

    def sample(self, B, noise, P, L):
        df = P["df"]
        R, D = df.shape
        eps = noise.normal((R, L, D))
        g = noise.standard_gamma(df[:, None] / 2, (R, L, D))
        t = eps * B.xp.sqrt(df[:, None] / (2 * g))
        return B.stop_gradient(P["loc"][:, None] + P["scale"][:, None] * t)

    def logpdf_elem(self, B, z, Pa):
        nu, mu, s = Pa["df"], Pa["loc"], Pa["scale"]
        t = (z - mu) / s
        return (
            B.lgamma((nu + 1) / 2)
            - B.lgamma(nu / 2)
            - 0.5 * (B.log(nu) + LOG_PI)
            - B.log(s)
            - (nu + 1) / 2 * B.xp.log1p(t * t / nu)
        )

    def score_np(self, z, Pa):
        nu, mu, s = Pa["df"], Pa["loc"], Pa["scale"]
        t = (z - mu) / s
        w = (nu + 1) / (nu + t * t)  # weight of the Gaussian scale mixture
        return {
            "df": 0.5 * (special.digamma((nu + 1) / 2) - special.digamma(nu / 2) - 1 / nu - np.log1p(t * t / nu))
            + 0.5 * w * t * t / nu,
            "loc": w * t / s,
            "scale": (w * t * t - 1) / s,
        }

    # E[z^m] exists only for df > m: the linear objective needs df > 1, the quadratic df > 2 (its df-gradient too)
    MOMENT_ORDER = {"linear": 1, "quadratic": 2}

    def moment_conditions(self, params, objective):
        m = self.MOMENT_ORDER.get(objective)
        if m is not None and np.any(params["df"] <= m):
            bad = float(np.min(params["df"]))
            return "params.df", f"must be > {m} for the {objective} objective (E[z^{m}] is infinite), got df = {bad:g}"
        return None

    # closed forms (per site)
    def exact_linear(self, P, op):
        nu, mu, a = P["df"], P["loc"], op["a"]
        if np.any(nu <= 1):
            raise ValueError("student_t x linear: E[z] exists only for df > 1")
        z0 = np.zeros_like(mu)
        return a * mu, {"df": z0, "loc": np.full_like(mu, a), "scale": z0}

    def exact_quadratic(self, P, op):
        nu, mu, s, k = P["df"], P["loc"], P["scale"], op["k"]
        if np.any(nu <= 2):
            raise ValueError("student_t x quadratic: the variance exists only for df > 2")
        v = nu / (nu - 2)
        return (mu - k) ** 2 + s**2 * v, {
            "df": -2 * s**2 / (nu - 2) ** 2,
            "loc": 2 * (mu - k),
            "scale": 2 * s * v,
        }

    def exact_cos(self, P, op):
        nu, mu, s, w = np.broadcast_arrays(P["df"], P["loc"], P["scale"], np.float64(op["omega"]))
        v, x = nu / 2, np.sqrt(nu) * np.abs(w) * s
        if np.any(x <= 0):
            return np.cos(w * mu), {"df": 0 * mu, "loc": -w * np.sin(w * mu), "scale": 0 * mu}
        kv, kv1 = special.kve(v, x), special.kve(v - 1, x)  # exp-scaled K_v(x) e^{x}
        log_norm = v * np.log(x) - special.gammaln(v) - (v - 1) * math.log(2) - x
        phi = kv * np.exp(log_norm)
        dv = np.vectorize(_dkv_dv_scaled)(v, x)
        dlogphi_dnu = 0.5 * (dv / kv + np.log(x / 2) - special.digamma(v)) - x / (2 * nu) * kv1 / kv
        c = np.cos(w * mu)
        return c * phi, {
            "df": c * phi * dlogphi_dnu,
            "loc": -w * np.sin(w * mu) * phi,
            "scale": -c * kv1 * np.exp(log_norm) * np.sqrt(nu) * np.abs(w),
        }

    def site_support(self, p):
        return (-math.inf, math.inf)

    def site_points(self, p):
        return [p["loc"]]


def _dkv_dv_scaled(v: float, x: float) -> float:
    """e^x ∂K_v(x)/∂v = ∫_0^T e^{-x (cosh t - 1)} t sinh(v t) dt, T where the integrand is below e^-750."""
    T = math.acosh(1 + 800 / x)
    while x * (math.cosh(T) - 1) - v * T < 750:
        T += 1.0

    def integrand(t: float) -> float:
        return t * math.exp(-x * (math.cosh(t) - 1) + v * t) * 0.5 * -math.expm1(-2 * v * t)

    val, _ = integrate.quad(integrand, 0, T, epsabs=1e-14, epsrel=1e-12, limit=200)
    return val


DISTRIBUTION = StudentT()
