"""truncated_normal(loc, scale, low, high): N(loc, scale²) restricted to [low, high], per coordinate.

With α = (low - μ)/σ, β = (high - μ)/σ, ξ = (z - μ)/σ and Z = Φ(β) - Φ(α):

    p(z) = φ(ξ) / (σ Z)   on [low, high]

**low and high are fixed** (``ParamSpec(differentiable=False)``): they are given like any parameter (and
recorded in results) but gradients and exact ground truth cover loc and scale only.  Why: the support
moves with low/high, so ∂E[f]/∂low = p(low)(E[f] - f(low)) has a boundary term that no score-function
estimator can see (E[f · ∂log p/∂low] = p(low) E[f] only): declaring them differentiable would make
every score-function estimator biased by construction.  (Pathwise and implicit gradients could
differentiate them; that is left out for one consistent definition.)

Sampling by inverse CDF, z = μ + σ Φ⁻¹((1-u) Φ(α) + u Φ(β)), u ~ U(0, 1), evaluated on the reflected
interval (-β, -α) when α + β > 0 so that Φ is only evaluated where it is small and accurate (the
map is the same function of u; stable while min(|α|, |β|) of the nearer bound is below ~37).
Closed forms for linear, quadratic, cos and exp_quad (Gaussian-polynomial integrals, complex-shifted
for cos), so no quadrature is needed.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from harness.problems.base import Distribution, ParamSpec

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
SQRT_2PI = math.sqrt(2 * math.pi)


def icdf_std(B, a, b, u):
    """ξ = Φ⁻¹((1-u)Φ(a) + uΦ(b)) on [a, b], computed in the lower tail (reflecting when a + b > 0)."""
    flip = (a + b) > 0
    lo = B.where(flip, -b, a)
    hi = B.where(flip, -a, b)
    v = B.where(flip, 1 - u, u)
    plo, phi = B.ndtr(lo), B.ndtr(hi)
    x = _clip(B, B.ndtri(plo + v * (phi - plo)), lo, hi)
    return B.where(flip, -x, x)


def _clip(B, x, lo, hi):
    return B.xp.minimum(B.xp.maximum(x, lo), hi)


def log_mass(B, a, b):
    """log Z = log(Φ(b) - Φ(a)), evaluated in the lower tail (reflected when a + b > 0)."""
    flip = (a + b) > 0
    lo = B.where(flip, -b, a)
    hi = B.where(flip, -a, b)
    return B.log(B.ndtr(hi) - B.ndtr(lo))


def _phi(x):
    return np.exp(-0.5 * x * x) / SQRT_2PI


def _Phi(x):
    """Standard normal CDF for real or complex x."""
    if np.iscomplexobj(x):
        return 0.5 * special.erfc(-x / math.sqrt(2))
    return special.ndtr(x)


def gauss_moments(lo, hi, n):
    """M_j = ∫_lo^hi x^j φ(x) dx for j = 0..n (complex limits allowed: φ and Φ are entire)."""
    if np.iscomplexobj(lo) or np.iscomplexobj(hi):
        m0 = _Phi(hi) - _Phi(lo)
    else:  # difference on the side where Φ is small
        m0 = np.where(lo + hi > 0, special.ndtr(-lo) - special.ndtr(-hi), special.ndtr(hi) - special.ndtr(lo))
    M = [m0, _phi(lo) - _phi(hi)]
    for j in range(2, n + 1):
        M.append((j - 1) * M[j - 2] + lo ** (j - 1) * _phi(lo) - hi ** (j - 1) * _phi(hi))
    return M


def poly_integral(coefs, lo, hi):
    """∫_lo^hi (Σ_j c_j x^j) φ(x) dx for coefficient arrays c_j."""
    M = gauss_moments(lo, hi, len(coefs) - 1)
    return sum(c * m for c, m in zip(coefs, M))


def poly_mul(p, q):
    out = [0.0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] = out[i + j] + a * b
    return out


XI_POWERS = ([1.0], [0.0, 1.0], [-1.0, 0.0, 1.0])  # 1, ξ, ξ² - 1: weights for value, ∂μ, ∂σ


class TruncatedNormal(Distribution):
    name = "truncated_normal"
    params = {
        "loc": ParamSpec("real", 0.0),
        "scale": ParamSpec("positive", 1.0),
        "low": ParamSpec("real", -2.0, doc="lower bound (fixed, not differentiated)", differentiable=False),
        "high": ParamSpec("real", 2.0, doc="upper bound (fixed, not differentiated)", differentiable=False),
    }
    support = "real"
    doc = "N(loc, scale^2) truncated to [low, high] per coordinate; low/high fixed (not differentiated)"
    examples = (
        {"params": {"loc": 0.5, "scale": 1.5, "low": -1.0, "high": 2.0}, "objective": "quadratic", "dim": 2},
        {
            "params": {"loc": [0.0, 1.0, -0.5], "scale": [0.5, 1.0, 1.0], "low": -1.0, "high": [1.0, 3.0, 2.0]},
            "objective": "cos",
            "dim": 3,
        },
        {"params": {"loc": 0.3, "scale": 0.8, "low": -0.5, "high": 1.5}, "objective": "exp_quad", "dim": 2},
        # right-tail interval (α + β > 0): exercises the reflected inverse CDF
        {"params": {"loc": 0.5, "scale": 1.0, "low": 1.0, "high": 4.0}, "objective": "linear", "dim": 2},
    )

    def validate(self, params):
        if np.any(params["low"] >= params["high"]):
            return f"needs low < high in every coordinate, got low={params['low']}, high={params['high']}"
        return None

    def sample(self, B, noise, P, L):
        R, D = P["loc"].shape
        u = noise.uniform((R, L, D))
        Pa = {k: v[:, None] for k, v in P.items()}
        z = _clip(B, self.rsample(B, Pa, u), Pa["low"], Pa["high"])  # μ + σξ may round 1 ulp outside
        return B.stop_gradient(z)

    icdf_std = staticmethod(icdf_std)  # ξ = Φ⁻¹((1-u)Φ(a) + uΦ(b)), for estimators writing the path out

    @staticmethod
    def rsample(B, Pa, u):
        """z = μ + σ Φ⁻¹((1-u)Φ(α) + uΦ(β)), differentiable in μ, σ (params aligned to u)."""
        mu, s = Pa["loc"], Pa["scale"]
        xi = icdf_std(B, (Pa["low"] - mu) / s, (Pa["high"] - mu) / s, u)
        return mu + s * xi

    def logpdf_elem(self, B, z, Pa):
        mu, s = Pa["loc"], Pa["scale"]
        xi = (z - mu) / s
        val = -0.5 * xi * xi - B.log(s) - LOG_SQRT_2PI - log_mass(B, (Pa["low"] - mu) / s, (Pa["high"] - mu) / s)
        inside = (z >= Pa["low"]) & (z <= Pa["high"])
        return B.where(inside, val, B.xp.full_like(val, -math.inf))

    def score_np(self, z, Pa):
        mu, s = Pa["loc"], Pa["scale"]
        a, b = (Pa["low"] - mu) / s, (Pa["high"] - mu) / s
        xi = (z - mu) / s
        Z = np.exp(log_mass(_NP, a, b))
        return {
            "loc": xi / s - (_phi(a) - _phi(b)) / (s * Z),
            "scale": (xi * xi - 1) / s - (a * _phi(a) - b * _phi(b)) / (s * Z),
        }

    def site_support(self, p):
        return (p["low"], p["high"])

    def site_points(self, p):
        return [p["loc"]]

    # -- closed forms ----------------------------------------------------------------------------
    # E[g] = N/Z with T_j = ∫_α^β g(μ+σξ) w_j(ξ) φ(ξ) dξ, w = (1, ξ, ξ²-1):
    #   E = T_0/Z,  ∂μ E = (T_1 - E·(φ(α)-φ(β)))/(σZ),  ∂σ E = (T_2 - E·(αφ(α)-βφ(β)))/(σZ)
    def _assemble(self, P, T):
        mu, s = P["loc"], P["scale"]
        a, b = (P["low"] - mu) / s, (P["high"] - mu) / s
        Z = np.exp(log_mass(_NP, a, b))
        E = T[0] / Z
        return E, {
            "loc": (T[1] - E * (_phi(a) - _phi(b))) / (s * Z),
            "scale": (T[2] - E * (a * _phi(a) - b * _phi(b))) / (s * Z),
        }

    def _poly_T(self, P, g_coefs):
        """T_j for g a polynomial in ξ (coefficient arrays ``g_coefs``)."""
        mu, s = P["loc"], P["scale"]
        a, b = (P["low"] - mu) / s, (P["high"] - mu) / s
        return [poly_integral(poly_mul(g_coefs, w), a, b) for w in XI_POWERS]

    def exact_linear(self, P, op):
        c = op["a"]
        return self._assemble(P, self._poly_T(P, [c * P["loc"], c * P["scale"]]))

    def exact_quadratic(self, P, op):
        d, s = P["loc"] - op["k"], P["scale"]
        return self._assemble(P, self._poly_T(P, [d * d, 2 * d * s, s * s]))

    def exact_exp_quad(self, P, op):
        # φ(ξ) e^{-k(μ+σξ)²} = e^{-kμ²/q} φ(η), η = √q (ξ - c), q = 1 + 2kσ², c = -2kμσ/q
        mu, s, k = P["loc"], P["scale"], op["k"]
        a, b = (P["low"] - mu) / s, (P["high"] - mu) / s
        q = 1 + 2 * k * s * s
        c, r = -2 * k * mu * s / q, np.sqrt(q)
        pref = np.exp(-k * mu * mu / q) / r
        xi_of_eta = [c, 1 / r]  # ξ = c + η/√q
        T = [pref * poly_integral(_compose(w, xi_of_eta), r * (a - c), r * (b - c)) for w in XI_POWERS]
        return self._assemble(P, T)

    def exact_cos(self, P, op):
        # φ(ξ) e^{iω(μ+σξ)} = e^{iωμ - (ωσ)²/2} φ(η), η = ξ - iωσ  (shifted contour; φ is entire)
        mu, s, w = P["loc"], P["scale"], op["omega"]
        a, b = (P["low"] - mu) / s, (P["high"] - mu) / s
        sh = 1j * w * s
        pref = np.exp(1j * w * mu - 0.5 * (w * s) ** 2)
        T = [(pref * poly_integral(_compose(p, [sh, 1.0]), a - sh, b - sh)).real for p in XI_POWERS]
        return self._assemble(P, T)


def _compose(p, lin):
    """Coefficients of p(c0 + c1·η) as a polynomial in η, for lin = [c0, c1]."""
    out, power = [0.0], [1.0]
    for coef in p:
        out = [x + coef * y for x, y in zip(out + [0.0] * (len(power) - len(out)), power)]
        power = poly_mul(power, lin)
    return out


class _NumpyMath:
    """Just enough of the backend interface for the shared helpers on plain NumPy arrays."""

    name = "numpy"
    xp = np

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)

    @staticmethod
    def ndtr(x):
        return special.ndtr(x)

    @staticmethod
    def ndtri(p):
        return special.ndtri(p)

    @staticmethod
    def log(x):
        return np.log(x)


_NP = _NumpyMath()

DISTRIBUTION = TruncatedNormal()
