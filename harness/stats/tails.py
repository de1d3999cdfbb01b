"""Tail index of replicate estimates: a Hill estimate with an exact upper confidence bound, and heavy-tail flags.

Used by harness.stats.metrics (which decides the intervals): the fourth-moment variance interval needs
E[G⁴] < ∞, i.e. a tail index α > 4 of the estimates G (P(|G - m| > x) ~ x^-α; moments of order < α are
finite).  The statistic is the per-replicate squared deviation v_r = Σ_c (G_rc - m_c)², whose tail index is
α/2 and whose variance is exactly what the variance interval needs to be finite — so one partial sort of R
values per parameter, whatever the dimension.  Calibration: docs/notes/measurement.md ("Heavy tails").
"""

from __future__ import annotations

import functools
import math

import numpy as np

TAIL_LEVEL = 0.99  # confidence of the tail index's upper bound (0.95 flagged exponential tails at R < 1000)
TAIL_MIN_R = 50  # fewer replicates: the tail is not assessed (tail_index NaN, heavy 0)
HEAVY_CODES = ("", "fourth_moment", "variance")  # heavy_tail values of codes 0, 1, 2


def tail_k(R: int) -> int:
    """Number of largest order statistics of the Hill estimate: k = ⌈√R⌉."""
    return int(math.ceil(math.sqrt(R)))


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


def tail_diagnostics(v: np.ndarray, level: float = TAIL_LEVEL) -> dict[str, np.ndarray]:
    """Tail index of the estimates from their per-replicate squared deviations v [..., R] (v_r >= 0).

    From the log-excesses l_i = log(v_(i) / v_(k+1)) of the k = ⌈√R⌉ largest v_(i), M_j = mean l_i^j:

    * Hill, γ_H = M_1: ``tail_index`` α = 2/γ_H is the tail index of the estimates themselves.  For a Pareto
      tail kγ_H/γ ~ Gamma(k, 1), so ``tail_index_ucb`` = α · Gamma⁻¹(level; k)/k is an upper confidence bound.
    * Dekkers-Einmahl-de Haan moment estimator, γ_M = M_1 + 1 - 1/(2(1 - M_1²/M_2)), ``tail_index_moment``
      = 2/γ_M (inf when γ_M <= 0).  Hill reads exponential tails (Gaussian products, chi-square) as α ≈ log(R/k),
      i.e. 3-4 at R = 2000; γ_M is ≈ 0 there and ≈ γ_H on Pareto tails.

    ``heavy``: 1 (the fourth moment may be infinite) when both the Hill bound and the moment index are below 4,
    2 (the variance may be infinite) when both are below 2, else 0.  At most half of the k + 1 largest values
    distinct (a discrete estimator: bounded, Hill would measure the spacing of its atoms) or v_(k+1) = 0: α = inf.
    ``threshold`` = v_(k+1).  R < TAIL_MIN_R: not assessed (NaN, heavy 0).
    """
    v = np.asarray(v, dtype=np.float64)
    R, shape = v.shape[-1], v.shape[:-1]
    if R < TAIL_MIN_R:
        nan = np.full(shape, np.nan)
        return {
            "tail_index": nan,
            "tail_index_ucb": nan,
            "tail_index_moment": nan,
            "heavy": np.zeros(shape, int),
            "threshold": nan,
        }
    k = tail_k(R)
    top, thr = top_k(v, k)
    srt = np.sort(np.concatenate([top, thr[..., None]], -1), -1)
    distinct = 1 + np.count_nonzero(np.diff(srt, axis=-1), axis=-1)
    pos = (thr > 0) & (2 * distinct > k + 1)
    lg = np.log(np.where(pos[..., None], top, 1.0) / np.where(pos, thr, 1.0)[..., None])
    m1, m2 = lg.mean(-1), (lg * lg).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gam_m = np.where(pos, m1 + 1 - 0.5 / (1 - m1 * m1 / np.where(pos, m2, 1.0)), 0.0)
        alpha = np.where(m1 > 0, 2.0 / np.maximum(m1, 1e-300), np.inf)
        alpha_m = np.where(gam_m > 0, 2.0 / np.maximum(gam_m, 1e-300), np.inf)
    ucb = alpha * (_gamma_ppf(level, k) / k)
    heavy = np.where((ucb < 2) & (alpha_m < 2), 2, np.where((ucb < 4) & (alpha_m < 4), 1, 0))
    return {"tail_index": alpha, "tail_index_ucb": ucb, "tail_index_moment": alpha_m, "heavy": heavy, "threshold": thr}
