"""Exact variances of registered estimators' L-sample estimates on two problems (validation of the race and of
``stochgrad recommend``): the Bernoulli toy f(b) = (b − t)² and the Gaussian quadratic f(z) = (z − k)²."""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss


def bernoulli_toy_variances(p: float, t: float, L: int) -> dict[str, float]:
    """Exact variance of the L-sample estimate on f(b) = (b − t)², D = 1: score function and RLOO by enumeration
    over b ∈ {0,1}^L; ARM and DisARM (mean of L independent single-sample estimates) by Gauss-Legendre on the
    pieces of u ∈ (0, 1) between the breakpoints p and 1 − p (their integrands are polynomial on each piece)."""
    f = lambda b: (b - t) ** 2  # noqa: E731
    out = {}
    for name in ("score_function", "score_function_rloo"):
        if name == "score_function_rloo" and L < 2:
            continue
        m1 = m2 = 0.0
        for bs in itertools.product((0.0, 1.0), repeat=L):
            b = np.array(bs)
            pr = float(np.prod(np.where(b == 1, p, 1 - p)))
            w = f(b) if name == "score_function" else (f(b) - f(b).mean()) * L / (L - 1)
            g = float((w * (b - p)).mean())
            m1, m2 = m1 + pr * g, m2 + pr * g * g
        out[name] = m2 - m1 * m1
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    th = math.log(p / (1 - p))
    x, wq = leggauss(8)
    brk = sorted({0.0, p, 1 - p, 1.0})
    for name in ("arm", "disarm"):
        m1 = m2 = 0.0
        for a, c in zip(brk[:-1], brk[1:]):
            u, w = (c - a) / 2 * x + (a + c) / 2, wq * (c - a) / 2
            b, bt = (u < sig(th)).astype(float), (u > sig(-th)).astype(float)
            g = (f(bt) - f(b)) * (u - 0.5) if name == "arm" else 0.5 * (f(b) - f(bt)) * (b - bt) * sig(abs(th))
            m1, m2 = m1 + float((w * g).sum()), m2 + float((w * g * g).sum())
        out[name] = (m2 - m1 * m1) / L
    return out


def gaussian_quadratic_variances(mu: float, s: float, k: float, L: int, nodes: int = 20) -> dict[str, float]:
    """Exact variance (mean over loc and scale) of the L-sample estimate on normal(μ, σ), f = (z − k)², by
    L-dimensional Gauss-Hermite quadrature (exact: the integrands are polynomials of degree <= 12 in ε)."""
    x, w = hermegauss(nodes)
    w = w / w.sum()
    eps = np.stack([g.ravel() for g in np.meshgrid(*([x] * L), indexing="ij")], -1)
    W = np.prod(np.meshgrid(*([w] * L), indexing="ij"), axis=0).ravel()
    z = mu + s * eps
    fz = (z - k) ** 2
    est = {"pathwise": ((2 * (z - k)).mean(1), (2 * (z - k) * eps).mean(1))}
    for name in ("score_function", "score_function_rloo"):
        if name == "score_function_rloo" and L < 2:
            continue
        wt = fz if name == "score_function" else (fz - fz.mean(1, keepdims=True)) * L / (L - 1)
        est[name] = ((wt * eps / s).mean(1), (wt * (eps**2 - 1) / s).mean(1))
    return {n: float(np.mean([(W * g * g).sum() - (W * g).sum() ** 2 for g in gs])) for n, gs in est.items()}
