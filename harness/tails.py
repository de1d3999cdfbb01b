"""Tail index of replicate estimates: a Hill estimate with an exact upper confidence bound, and heavy-tail flags.

Used by harness.metrics (which decides the intervals): the fourth-moment variance interval needs
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

    Hill: γ = mean over the k = ⌈√R⌉ largest v_(i) of log(v_(i) / v_(k+1)); ``tail_index`` α = 2/γ is the
    tail index of the estimates themselves; inf when at most half of the k + 1 largest values are distinct
    (a discrete estimator: bounded, all moments finite; Hill on its few atoms measures their spacing, not a
    tail) or when v_(k+1) = 0.  For a Pareto tail
    kγ/γ_true ~ Gamma(k, 1), so ``tail_index_ucb`` = α · Gamma⁻¹(level; k)/k is an upper confidence bound of α.
    ``heavy``: 2 when the bound is below 2 (the variance may be infinite), 1 below 4 (the fourth moment may
    be), else 0.  ``threshold`` = v_(k+1).  R < TAIL_MIN_R: not assessed (NaN, heavy 0).
    """
    v = np.asarray(v, dtype=np.float64)
    R, shape = v.shape[-1], v.shape[:-1]
    if R < TAIL_MIN_R:
        nan = np.full(shape, np.nan)
        return {"tail_index": nan, "tail_index_ucb": nan, "heavy": np.zeros(shape, int), "threshold": nan}
    k = tail_k(R)
    top, thr = top_k(v, k)
    srt = np.sort(np.concatenate([top, thr[..., None]], -1), -1)
    distinct = 1 + np.count_nonzero(np.diff(srt, axis=-1), axis=-1)
    pos = (thr > 0) & (2 * distinct > k + 1)  # tied extremes: a discrete (bounded) estimator, no power tail
    ratio = np.where(pos[..., None], top, 1.0) / np.where(pos, thr, 1.0)[..., None]
    gam = np.where(pos, np.log(ratio).mean(-1), 0.0)
    with np.errstate(divide="ignore"):
        alpha = np.where(gam > 0, 2.0 / np.maximum(gam, 1e-300), np.inf)
    ucb = alpha * (_gamma_ppf(level, k) / k)
    heavy = np.where(ucb < 2, 2, np.where(ucb < 4, 1, 0))
    return {"tail_index": alpha, "tail_index_ucb": ucb, "heavy": heavy, "threshold": thr}
