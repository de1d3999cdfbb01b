"""Tail index of replicate estimates: evidence of light tails (a generalized Pareto fit), Hill and moment estimates.

Used by harness.stats.metrics (which decides the intervals and the bias verdicts).  The fourth-moment variance interval
needs E[G⁴] < ∞, i.e. a tail index α > 4 of the estimates G (P(|G - m| > x) ~ x^-α; moments of order < α are
finite).  The statistic is the per-replicate squared deviation v_r = Σ_c (G_rc - m_c)², whose variance is exactly
what the variance interval needs to be finite — one partial sort of R values per parameter, whatever the dimension.

The two-sided interval is kept only with *evidence* of light tails: a generalized Pareto distribution (GPD) fitted
to the excesses of w = √v over its (n+1)-th largest value (n = :func:`gpd_n`) must put the shape ξ = 1/α below
1/4 with confidence.  Excesses over a threshold are location-invariant, so exponential and Pareto tails are fitted
without the bias that centring adds to Hill-type estimators.  Calibration on the grid of
suites/benchmarks/calibration.py: docs/notes/measurement.md ("Coverage whatever the tails").
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

TAIL_LEVEL = 0.99  # confidence of the Hill upper bound (column tail_index_ucb)
TAIL_LIGHT_Z = 0.8416  # one-sided z (80%) of the GPD upper bound of ξ that must show ξ < 1/4 (calibrated on the grid)
TAIL_FALSE_FLAG_Z = 2.0537  # small n: z shrinks (below 0) so that an exponential tail is flagged in <= 2% of sets
TAIL_MIN_R = 50  # fewer replicates: the tail is not assessed (tail indices NaN, heavy 0)
HEAVY_CODES = ("", "fourth_moment", "variance")  # heavy_tail values of codes 0, 1, 2


def tail_k(R: int) -> int:
    """Number of largest order statistics of the Hill and moment estimates: k = ⌈√R⌉."""
    return int(math.ceil(math.sqrt(R)))


def gpd_n(R: int) -> int:
    """Number of excesses of the GPD fit: 4⌈√R⌉ (9% of R = 2000, 2.8% of 20000), at most R/10 (deeper, a bounded
    side of the estimates — with a density spike at its boundary — enters the largest |G - m|)."""
    return max(1, min(4 * tail_k(R), R // 10))


@functools.lru_cache(maxsize=512)
def _gamma_ppf(level: float, k: int) -> float:
    from scipy import stats

    return float(stats.gamma.ppf(level, k))


def top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest values of x [..., R] (unordered) and the (k+1)-th largest.  A long 1-D x is first cut
    to the values >= the (k+1)-th largest of 4(k+1) block maxima (a superset; a full partition of 2e5 values
    costs 3 summaries)."""
    if x.ndim == 1 and x.shape[0] >= 16 * (k + 1):
        nb = 4 * (k + 1)
        bm = x[: nb * (x.shape[0] // nb)].reshape(nb, -1).max(1)
        x = x[x >= np.partition(bm, nb - k - 1)[nb - k - 1]]
    n = x.shape[-1]
    p = np.partition(x, n - k - 1, axis=-1)
    return p[..., n - k :], p[..., n - k - 1]


def top_sorted(x: np.ndarray, k: int) -> np.ndarray:
    """The k + 1 largest values of x [..., R] in ascending order ([..., k + 1]; the first is the threshold)."""
    top, thr = top_k(x, k)
    return np.sort(np.concatenate([thr[..., None], top], -1), -1)


def gpd_fit(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape ξ and scale σ of a generalized Pareto distribution fitted to excesses y [..., n] (ascending, >= 0).

    Zhang & Stephens (2009, Technometrics 51:316): the profile likelihood in b = -ξ/σ averaged over a grid of
    m = 30 + ⌊√n⌋ points weighted by their likelihoods (no prior).  Nearly as efficient as maximum likelihood
    (sd ≈ (1 + ξ)/√n), closed form, vectorized over leading axes.  Sets without positive excesses or with a zero
    lower quartile (ties: a discrete estimator) get ξ = -inf.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    m = 30 + int(math.sqrt(n))
    q = y[..., max(int(n / 4 + 0.5) - 1, 0)]
    top = y[..., -1]
    ok = (q > 0) & (top > 0)
    q, top = np.where(ok, q, 1.0), np.where(ok, top, 1.0)
    j = np.arange(1, m + 1)
    b = 1.0 / top[..., None] + (1.0 - np.sqrt(m / (j - 0.5))) / (3.0 * q[..., None])  # [..., m], b < 1/max(y)
    ys = np.where(ok[..., None], y, 1.0)
    k = np.stack([np.log1p(-b[..., i, None] * ys).mean(-1) for i in range(m)], -1)  # [..., m], one pass each
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ll = n * (np.log(-b / k) - k - 1.0)
        w = 1.0 / np.exp(ll[..., None, :] - ll[..., :, None]).sum(-1)
        bhat = (b * w).sum(-1) / w.sum(-1)
        xi = np.log1p(-bhat[..., None] * ys).mean(-1)
        sigma = -xi / bhat
    return np.where(ok, xi, -np.inf), np.where(ok, sigma, np.nan)


def gpd_upper(xi: np.ndarray, n: int, z: float = TAIL_LIGHT_Z) -> np.ndarray:
    """One-sided upper confidence bound of ξ from a fit to n excesses: ξ + z(1 + ξ)/√n (ξ floored at -1/2)."""
    xi = np.asarray(xi, dtype=np.float64)
    return xi + z * (1.0 + np.maximum(xi, -0.5)) / math.sqrt(n)


def light_z(n: int) -> float:
    """The z of the bound ξ⁺ = ξ + z(1 + ξ)/√n that decides the flag, for n excesses: TAIL_LIGHT_Z (evidence of a
    light tail), or less where n is too small for that evidence without flagging an exponential tail (ξ̂ ≈ N(0, 1/n))
    in more than 2% of sets: √n/4 - TAIL_FALSE_FLAG_Z, negative below n = 67 (R ≈ 700), where the flag then needs
    evidence of a *heavy* tail instead.  n = 180 (R = 2000) and up: 0.84."""
    return min(TAIL_LIGHT_Z, 0.25 * math.sqrt(n) - TAIL_FALSE_FLAG_Z)


def _alpha(xi: np.ndarray) -> np.ndarray:
    """Tail index α = 1/ξ (inf for ξ <= 0)."""
    with np.errstate(divide="ignore"):
        return np.where(xi > 0, 1.0 / np.maximum(xi, 1e-300), np.inf)


def fit_tail(s: np.ndarray, n: int, srt: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """GPD fit to the n excesses of s [..., R] over its (n+1)-th largest value ``u``: shape ``xi`` (-inf where at
    most half of the n + 1 largest values are distinct — a discrete, bounded estimator — or there is no spread),
    the mean excess ``ybar`` and ``u``.  ``srt``: the n + 1 largest values of s, ascending, if already known."""
    srt = top_sorted(s, n) if srt is None else srt
    y = srt[..., 1:] - srt[..., :1]
    distinct = 1 + np.count_nonzero(np.diff(srt, axis=-1), axis=-1)
    xi, _ = gpd_fit(y)
    return {"xi": np.where(2 * distinct > n + 1, xi, -np.inf), "ybar": y.mean(-1), "u": srt[..., 0]}


def tail_diagnostics(v: np.ndarray, level: float = TAIL_LEVEL) -> dict[str, np.ndarray]:
    """Tail index of the estimates from their per-replicate squared deviations v [..., R] (v_r >= 0).

    * ``tail_index_gpd``: α = 1/ξ of the generalized Pareto distribution fitted to the n = :func:`gpd_n` largest
      excesses of w = √v (|G - m| for one coordinate; excesses over a threshold are location-invariant, so
      exponential and Pareto tails are fitted without the bias that centring adds to Hill-type estimators);
      ``tail_index_lcb`` = 1/ξ⁺ with ξ⁺ = ξ + z(1 + ξ)/√n (z = :func:`light_z`: 0.84 from R ≈ 2000), a lower confidence bound of α.
    * From the log-excesses l_i = log(v_(i) / v_(k+1)) of the k = ⌈√R⌉ largest v_(i), M_j = mean l_i^j:
      Hill, ``tail_index`` α = 2/M_1, with ``tail_index_ucb`` = α · Gamma⁻¹(level; k)/k (exact for a Pareto
      tail); Dekkers-Einmahl-de Haan, γ_M = M_1 + 1 - 1/(2(1 - M_1²/M_2)), ``tail_index_moment`` = 2/γ_M.

    ``heavy``: 0 where ``tail_index_lcb`` > 4 (evidence that the fourth moment is finite) or the moment estimator
    reads a bounded or light-type tail (γ_M <= 0: ``tail_index_moment`` = inf; a bounded estimator has every
    moment, and a GPD fit to 9% of its values can read ξ ≈ 0.2 in its shoulder); else 1 (the fourth moment may be
    infinite), 2 where even ``tail_index_lcb`` <= 2 (the variance may be infinite).  Tied extremes (at most half of
    the largest values distinct: a discrete estimator, bounded) or v_(k+1) = 0: α = inf, heavy 0.  Also returned
    for :func:`completion_factor`: ``tail`` (the fit), ``top`` (the n + 1 largest v, ascending) and ``n``.  R < TAIL_MIN_R: not assessed.
    """
    v = np.asarray(v, dtype=np.float64)
    R, shape = v.shape[-1], v.shape[:-1]
    keys = ("tail_index", "tail_index_ucb", "tail_index_moment", "tail_index_gpd", "tail_index_lcb")
    if R < TAIL_MIN_R:
        out: dict[str, np.ndarray] = {key: np.full(shape, np.nan) for key in keys}
        return {**out, "heavy": np.zeros(shape, int), "tail": {}, "top": np.zeros((*shape, 0)), "n": 0}
    k, n = tail_k(R), gpd_n(R)
    big = top_sorted(v, max(k, n))  # [..., max(k, n) + 1] ascending: one partial sort for both
    srt = big[..., -(k + 1) :]
    distinct = 1 + np.count_nonzero(np.diff(srt, axis=-1), axis=-1)
    top, thr = srt[..., 1:], srt[..., 0]
    posk = (thr > 0) & (2 * distinct > k + 1)
    # Hill and moment estimates (columns) from the k largest
    lg = np.log(np.where(posk[..., None], top, 1.0) / np.where(posk, thr, 1.0)[..., None])
    m1, m2 = lg.mean(-1), (lg * lg).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gam_m = np.where(posk, m1 + 1 - 0.5 / (1 - m1 * m1 / np.where(posk, m2, 1.0)), 0.0)
        alpha = np.where(m1 > 0, 2.0 / np.maximum(m1, 1e-300), np.inf)
    # the decision: a GPD fit of the tail of w = √v (w's tail index is the estimates' α)
    tail = fit_tail(v, n, np.sqrt(big[..., -(n + 1) :]))  # the largest w are the square roots of the largest v
    xi = np.where(posk, tail["xi"], -np.inf)
    lcb = _alpha(gpd_upper(xi, n, light_z(n)))
    fat = posk & (gam_m > 0)  # the moment estimator reads no bounded (γ < 0) or light-type tail
    heavy = np.where(fat & (lcb <= 2), 2, np.where(fat & (lcb <= 4), 1, 0))
    return {
        "tail_index": np.where(posk, alpha, np.inf),
        "tail_index_ucb": np.where(posk, alpha * (_gamma_ppf(level, k) / k), np.inf),
        "tail_index_moment": np.where(posk, _alpha(gam_m / 2), np.inf),
        "tail_index_gpd": _alpha(xi),
        "tail_index_lcb": lcb,
        "heavy": heavy,
        "tail": tail,
        "top": big[..., -(n + 1) :],
        "n": n,
    }


def _gpd_moment(xi: np.ndarray, sigma: np.ndarray, r: int) -> np.ndarray:
    """E[Y^r] of a GPD(ξ, σ): r! σ^r / Π_{i<=r} (1 - iξ), infinite for ξ >= 1/r."""
    den = np.ones_like(xi)
    for i in range(1, r + 1):
        den = den * (1.0 - i * xi)
    return np.where(den > 0, math.factorial(r) * sigma**r / np.where(den > 0, den, 1.0), np.inf)


def completion_factor(v: np.ndarray, diag: dict[str, Any]) -> np.ndarray:
    """Factor (>= 1) on the standard error of mean(v) for v [..., R] whose tail :func:`tail_diagnostics` fitted.

    The fourth-moment standard error rests on the sample's Σ v_r², which misses the tail the sample has not seen.
    Above the threshold u = w_(n+1) (w = √v) the fitted GPD (ξ̂, σ = ȳ(1 - ξ̂), ȳ the mean excess: the fit keeps
    the sample's mean excess) gives E[w⁴ | w > u] = E[(u + Y)⁴] = Σ_j C(4, j) u^(4-j) E[Y^j]; the completed Σ v_r²
    is the sum over v <= u² plus n E[(u + Y)⁴].  The factor is √(max(m2_completed, m2) / m2): 1 where the sample
    already shows at least that much, large as ξ̂ nears 1/4 (where the fourth moment ends and the tail is
    flagged).  1 where no tail was fitted or the tail is flagged."""
    v = np.asarray(v, dtype=np.float64)
    R = v.shape[-1]
    tail, n = diag["tail"], diag["n"]
    if not tail:
        return np.ones(v.shape[:-1])
    fitted = (np.asarray(diag["heavy"]) == 0) & np.isfinite(tail["xi"])
    if not np.any(fitted):
        return np.ones(v.shape[:-1])
    u = tail["u"]
    s2 = np.einsum("...r,...r->...", v, v)
    top = diag["top"][..., 1:]
    total = s2 - np.einsum("...r,...r->...", top, top)  # Σ v² over v <= u² (light tails: no cancellation)
    xs = np.where(fitted, tail["xi"], 0.0)
    sigma = tail["ybar"] * (1.0 - xs)
    total = total + n * (u**4 + sum(math.comb(4, j) * u ** (4 - j) * _gpd_moment(xs, sigma, j) for j in range(1, 5)))
    mean = v.mean(-1)
    m2 = s2 / R - mean * mean
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f = np.sqrt(np.maximum(total / R - mean * mean, m2) / m2)
    return np.where(fitted & (m2 > 0) & np.isfinite(f), f, 1.0)


def side_light(x: np.ndarray, bound: float, z: float = TAIL_LIGHT_Z) -> tuple[np.ndarray, np.ndarray]:
    """Whether each tail of x [..., R] shows evidence of lightness: (upper, lower), each True where the GPD fit to
    the n = :func:`gpd_n` excesses beyond that side's (n+1)-th extreme value has ξ⁺ < ``bound``.  Tied extremes
    (a discrete, bounded estimator) and R < TAIL_MIN_R count as light."""
    x = np.asarray(x, dtype=np.float64)
    R = x.shape[-1]
    if R < TAIL_MIN_R:
        light = np.ones(x.shape[:-1], dtype=bool)
        return light, light
    n = gpd_n(R)
    up, lo = fit_tail(x, n), fit_tail(-x, n)
    return gpd_upper(up["xi"], n, z) < bound, gpd_upper(lo["xi"], n, z) < bound
