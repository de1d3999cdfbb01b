r"""Bias, variance and MSE of R replicate L-sample gradient estimates, with 95% confidence intervals.

Aggregation over a parameter's coordinates c (the column reference: results/README.md, docs/results.md):
  exact_grad  mean_c e_c                     grad_mean  mean_c m_c  (m_c = mean over replicates)
  bias        sqrt(mean_c (m_c - e_c)^2)     bias_z     max_c |m_c - e_c| / se_c
  variance    mean_c Var_r[G_rc]             mse        mean_c mean_r (G_rc - e_c)^2
  snr         sqrt(mean_c m_c^2 / variance)

Confidence intervals (method ``hall-studentized``).  ``variance`` and ``mse`` are means over replicates
of the per-replicate statistics

    v_r = R/(R-1) · mean_c (G_rc - m_c)^2        u_r = mean_c (G_rc - e_c)^2,

so their standard errors are ``std(v)/sqrt(R)`` — the fourth-moment standard error of the sample variance,
valid under any correlation between coordinates.  The interval is not the symmetric normal one: heavy-tailed
estimators (score function on a Gamma of small shape) have strongly right-skewed v_r, and there the sample
variance is usually *below* the truth while its standard error is too small as well.  We therefore use
Hall's (1992) skewness-corrected studentized interval: with skewness γ of v_r and A = γ/sqrt(R),

    g(t) = t + A t^2/3 + A^2 t^3/27 + A/6   is ~N(0, 1) for t = (mean - μ)/se,
    μ ∈ [mean - se·g⁻¹(z), mean - se·g⁻¹(-z)],   g⁻¹(s) = 3((1 + A(s - A/6))^{1/3} - 1)/A,

which removes the O(R^{-1/2}) coverage error of the normal interval (Hall 1992, JRSS B 54:221-228).  The
bias interval applies the same correction to each coordinate's mean with a Bonferroni z over the C
coordinates; the box of coordinate intervals then bounds the RMS bias.  Coverage is tested in
tests/test_coverage.py; see docs/notes/measurement.md for simulated coverage of the alternatives.

Heavy tails.  The interval above needs Var[v_r] < ∞, i.e. a finite fourth moment of the estimates, and it is
kept only with evidence of one (harness.stats.tails.tail_diagnostics: a generalized Pareto fit to the 4⌈√R⌉ largest
√v_r must put the tail index α above 4 with 80% confidence, ``tail_index_lcb`` > 4); its standard error then uses
the fourth moment completed by the fitted tail where the sample shows less (harness.stats.tails.completion_factor).
Without that evidence (``heavy_tail`` = "fourth_moment"; "variance" below 2) variance and MSE get a one-sided 95%
lower bound valid whatever the tail (:func:`truncated_lower_bound`; upper limit NaN; ``ci_method``
"truncated-lower-bound"), and ``variance_ci_valid`` is False.

Bias verdicts (:func:`bias_tests`, :func:`bias_verdict`, :func:`family_levels`): the batch-means t test, judged
only in directions the tails let it hold its level ("cannot judge" otherwise), at a Bonferroni level over the
distinct cells judged.  Calibration on the grid of suites/benchmarks/calibration.py: docs/notes/measurement.md
("Coverage whatever the tails", "Bias verdicts").

Every function is vectorized over leading "replicate set" axes, so the coverage test evaluates thousands
of independent sets in one call with exactly the code that measures a cell.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from harness.stats.tails import HEAVY_CODES, completion_factor, side_light, tail_diagnostics, tail_k, top_sorted

Z95 = 1.959963984540054
CI_METHOD = "hall-studentized"
CI_METHOD_HEAVY = "truncated-lower-bound"  # heavy tails: a one-sided 95% lower bound of variance and MSE
METRIC_KEYS = (
    "grad_mean",
    "bias",
    "bias_ci_low",
    "bias_ci_high",
    "bias_z",
    "variance",
    "variance_se",
    "variance_ci_low",
    "variance_ci_high",
    "variance_rel_halfwidth",
    "mse",
    "mse_se",
    "mse_ci_low",
    "mse_ci_high",
    "snr",
    "tail_index",
    "tail_index_ucb",
    "tail_index_moment",
    "tail_index_gpd",
    "tail_index_lcb",
)


def _hall_inverse(s: float | np.ndarray, A: np.ndarray) -> np.ndarray:
    """g⁻¹(s) for Hall's transform with skewness parameter A (elementwise; A → 0 gives s)."""
    A = np.asarray(A, dtype=np.float64)
    small = np.abs(A) < 1e-8
    As = np.where(small, 1.0, A)
    out = 3.0 * (np.cbrt(1.0 + As * (s - As / 6.0)) - 1.0) / As
    return np.where(small, s, out)


def _moments(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mean, dev = x - mean (shaped like x), and the 2nd and 3rd central moments along ``axis``.

    Along the last axis the moment sums are einsum contractions (one pass each, no temporaries)."""
    n = x.shape[axis]
    mean = x.mean(axis, keepdims=True)
    dev = x - mean
    if axis in (-1, x.ndim - 1):
        m2 = np.einsum("...r,...r->...", dev, dev) / n
        m3 = np.einsum("...r,...r,...r->...", dev, dev, dev) / n
    else:
        d2 = dev * dev
        m2, m3 = d2.mean(axis), (d2 * dev).mean(axis)
    return mean.squeeze(axis), dev, m2, m3


def _hall(mean: np.ndarray, m2: np.ndarray, m3: np.ndarray, R: int, z: float) -> tuple[np.ndarray, ...]:
    """(se, low, high) of the mean from its central moments (Hall's skewness-corrected interval)."""
    sd = np.sqrt(m2 * (R / (R - 1)))
    se = sd / math.sqrt(R)
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(sd > 0, m3 / np.maximum(sd, 1e-300) ** 3, 0.0)
    A = skew / math.sqrt(R)
    return se, mean - se * _hall_inverse(z, A), mean - se * _hall_inverse(-z, A)


def coordinate_mean_se(g: np.ndarray, block_elems: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate mean and standard error of the mean (ddof = 1) of replicates ``g`` [R, C], in blocks of about
    ``block_elems`` values: a D = 200 workload's 157 000 encoder weights × 1000 replicates need no full-size
    temporaries (``g.std(0)`` made two 1.25 GB ones and took 3.5 s a cell)."""
    g = np.asarray(g, dtype=np.float64)
    R, C = g.shape
    mean, se = np.empty(C), np.empty(C)
    step = max(1, block_elems // max(R, 1))
    for a in range(0, C, step):
        blk = g[:, a : a + step]
        m = blk.mean(0)
        d = blk - m
        mean[a : a + step] = m
        se[a : a + step] = np.sqrt(np.einsum("rc,rc->c", d, d) / ((R - 1) * R))
    return mean, se


def mean_interval(x: np.ndarray, z: float = Z95, axis: int = -1) -> tuple[np.ndarray, ...]:
    """Mean, standard error and Hall-corrected interval of the mean of ``x`` along ``axis``.

    Returns (mean, se, low, high).  With zero spread the interval collapses to the mean.
    """
    mean, _, m2, m3 = _moments(x, axis)
    return (mean, *_hall(mean, m2, m3, x.shape[axis], z))


def bonferroni_z(n: int, level: float = 0.95) -> float:
    """Two-sided critical value for ``n`` simultaneous intervals of family-wise ``level``."""
    return NormalDist().inv_cdf(1 - (1 - level) / (2 * max(int(n), 1)))


ROUNDING_ULPS = 1e3  # "rounding level": this many machine epsilons of the scale |exact| + |mean|


def rounding_level(eps: Any, exact: Any, mean: Any) -> Any:
    """The size of an error that rounding alone can make in an estimate: ``ROUNDING_ULPS`` · eps · (|e| + |m|).

    The one definition behind "exact" (a variance at or below its square is rounding: the report's ``exact_est``
    and the race) and behind the bias tests' floor on the standard error (a deviation below it is not a bias).
    An exact estimator that cancels terms much larger than its result rounds by more than a few eps of the result:
    the delta method on gamma × quadratic at D = 16 (exact in exact arithmetic) deviates by 1.2e3 eps of it in one
    coordinate, systematically, which a floor of 64 eps read as a bias."""
    return ROUNDING_ULPS * eps * (np.abs(exact) + np.abs(mean))


def _bias_parts(
    m: np.ndarray, m2: np.ndarray, m3: np.ndarray, e: np.ndarray, R: int, zb: float, rel_eps: float
) -> dict[str, np.ndarray]:
    """Per-coordinate bias pieces from the coordinates' means and central moments, summed over coordinates."""
    se_c, lo_c, hi_c = _hall(m, m2, m3, R, zb)
    floor = rounding_level(rel_eps, e, m)
    se_c = np.maximum(se_c, floor)
    d = m - e
    absd = np.abs(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        zc = np.where(se_c > 0, absd / se_c, np.where(absd > 1e-12 * (1 + np.abs(e)), np.inf, 0.0))
    dlo, dhi = lo_c - e - floor, hi_c - e + floor  # interval of the true bias per coordinate
    near = np.where((dlo <= 0) & (dhi >= 0), 0.0, np.minimum(np.abs(dlo), np.abs(dhi)))
    far = np.maximum(np.abs(dlo), np.abs(dhi))
    return dict(
        m=m.sum(-1),
        m2=(m * m).sum(-1),
        d2=(d * d).sum(-1),
        near2=(near * near).sum(-1),
        far2=(far * far).sum(-1),
        zmax=zc.max(-1),
    )


def _coordinate_block(g: np.ndarray, e: np.ndarray, R: int, zb: float, rel_eps: float) -> dict[str, np.ndarray]:
    """Per-coordinate statistics of one block g [..., R, c]: replicate sums for v and u, bias parts.

    Reductions run along a contiguous axis: few coordinates are transposed to put R last (NumPy reduces
    [R, 1] along axis 0 several times slower than [1, R] along axis 1)."""
    if g.shape[-1] < 64:
        x, ax, cax, ex = np.ascontiguousarray(np.swapaxes(g, -1, -2)), -1, -2, e[:, None]
    else:
        x, ax, cax, ex = g, -2, -1, e
    m, dev, m2, m3 = _moments(x, ax)  # m [..., c]
    dev *= dev  # now dev²
    diff = x - ex
    diff *= diff
    one = x.shape[cax] == 1  # a single coordinate: no sum over coordinates needed
    out = {"v": dev.squeeze(cax) if one else dev.sum(cax), "u": diff.squeeze(cax) if one else diff.sum(cax)}
    out.update(_bias_parts(m, m2, m3, e, R, zb, rel_eps))
    return out


def _assemble(acc: dict[str, np.ndarray], mom: dict[str, tuple], R: int, C: int, z: float) -> dict[str, np.ndarray]:
    """The metric dict from summed bias parts ``acc`` and (mean, m2, m3) of v_r and u_r in ``mom``."""
    out: dict[str, np.ndarray] = {
        "grad_mean": acc["m"] / C,
        "bias": np.sqrt(acc["d2"] / C),
        "bias_ci_low": np.sqrt(acc["near2"] / C),
        "bias_ci_high": np.sqrt(acc["far2"] / C),
        "bias_z": acc["zmax"],
    }
    for name, (mean, m2, m3) in mom.items():
        se, lo, hi = _hall(mean, m2, m3, R, z)
        out[name], out[f"{name}_se"] = mean, se
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = np.maximum(lo, 0.0), hi
    var = out["variance"]
    pos = var > 0
    safe = np.where(pos, var, 1.0)
    half = (out["variance_ci_high"] - out["variance_ci_low"]) / 2
    out["variance_rel_halfwidth"] = np.where(pos, half / safe, 0.0)
    out["snr"] = np.where(pos, np.sqrt(acc["m2"] / C / safe), np.inf)
    return out


# -- heavy tails: tail index of the estimates, flags, and bounds that do not assume a fourth moment -------------
BOUND_LEVEL = 0.95  # confidence of the one-sided lower bound reported where the tail is heavy


def truncation_levels(R: int) -> tuple[int, ...]:
    """Truncation ranks j of :func:`truncated_lower_bound`: 0 (none), 1, 2, 4, … below k = ⌈√R⌉, and k."""
    k = min(tail_k(R), R - 1)
    return (0, *(2**i for i in range(k.bit_length()) if 2**i < k), k)


def truncated_lower_bound(x: np.ndarray, level: float = BOUND_LEVEL) -> np.ndarray:
    """One-sided lower confidence bound of E[x] for x [..., R] >= 0, valid whatever the tail.

    For a level c, E[min(x, c)] <= E[x], and min(x, c) is bounded, so the one-sided Hall bound of its mean is
    honest.  The bound is the largest, over the truncation levels c_j = x_(j+1) (the (j+1)-th largest value;
    j ∈ :func:`truncation_levels`, j = 0: no truncation), of the Hall bound of mean(min(x, c_j)) at level
    1 - (1 - level)/J (Bonferroni over the J levels): the data choose how much of the tail to keep.  The sums of
    min(x, c_j)^p come from one pass at the lowest level plus the k largest values (no cancellation)."""
    x = np.asarray(x, dtype=np.float64)
    R = x.shape[-1]
    js = truncation_levels(R)
    k = js[-1]
    z = NormalDist().inv_cdf(1 - (1 - level) / len(js))
    srt = top_sorted(x, k)  # [..., k + 1] ascending; srt[..., 0] = x_(k+1)
    base = np.minimum(x, srt[..., :1])
    sq = base * base
    sums = [base.sum(-1), sq.sum(-1), np.einsum("...r,...r->...", sq, base)]
    c0 = srt[..., 0]
    best = np.full(x.shape[:-1], -np.inf)
    for j in js:
        c = srt[..., -(j + 1)] if j > 0 else np.full(c0.shape, np.inf)
        t = np.minimum(srt[..., 1:], c[..., None])  # the k largest, truncated at c (>= c0)
        s1, s2, s3 = (sums[p - 1] + (t**p - c0[..., None] ** p).sum(-1) for p in (1, 2, 3))
        mean = s1 / R
        m2 = np.maximum(s2 / R - mean * mean, 0.0)
        m3 = s3 / R - 3 * mean * (s2 / R) + 2 * mean**3
        best = np.maximum(best, _hall(mean, m2, m3, R, z)[1])
    return np.maximum(best, 0.0)


TAIL_KEYS = ("tail_index", "tail_index_ucb", "tail_index_moment", "tail_index_gpd", "tail_index_lcb", "heavy")


def _apply_tails(
    out: dict[str, np.ndarray], d: dict[str, np.ndarray], v: np.ndarray, u: np.ndarray, R: int, C: int
) -> dict[str, np.ndarray]:
    """Add the tail columns of diagnostics ``d`` to ``out``; where the tail is heavy (no evidence of a finite
    fourth moment), replace the variance and MSE intervals by one-sided lower bounds (upper limit NaN).  Bias
    intervals are kept: they need a finite variance only."""
    out.update({k: d[k] for k in TAIL_KEYS})
    heavy = d["heavy"] > 0
    if not heavy.any():
        return out
    nan = np.full(heavy.shape, np.nan)
    for name, x, s in (("variance", v, R / ((R - 1) * C)), ("mse", u, 1 / C)):
        out[f"{name}_ci_low"] = np.where(heavy, truncated_lower_bound(x) * s, out[f"{name}_ci_low"])
        out[f"{name}_ci_high"] = np.where(heavy, nan, out[f"{name}_ci_high"])
    out["variance_rel_halfwidth"] = np.where(heavy, nan, out["variance_rel_halfwidth"])
    return out


def _completed(mom: tuple[np.ndarray, ...], f: np.ndarray) -> tuple[np.ndarray, ...]:
    """(mean, m2, m3) with the spread scaled by the tail-completion factor f (the skewness kept)."""
    mean, m2, m3 = mom
    return mean, m2 * f * f, m3 * f**3


def batch_summary(
    G: np.ndarray, exact: np.ndarray, z: float = Z95, rel_eps: float = 2.2e-16, block_elems: int = 1 << 22
) -> dict[str, np.ndarray]:
    """Metrics of replicate sets ``G`` [..., R, C] (finite values, R >= 2) against ``exact`` [C].

    Returns arrays of shape [...] for every key of :data:`METRIC_KEYS`.  Coordinates are processed in
    blocks of about ``block_elems`` values, so a D = 1e7 parameter needs no full-size temporaries.
    """
    G = np.asarray(G, dtype=np.float64)
    e_all = np.asarray(exact, dtype=np.float64).reshape(-1)
    R, C = G.shape[-2], G.shape[-1]
    zb = bonferroni_z(C) if C > 1 else z
    acc: dict[str, np.ndarray] = {}
    step = max(1, block_elems // max(R * int(np.prod(G.shape[:-2], dtype=np.int64)), 1))
    for a in range(0, C, step):
        part = _coordinate_block(G[..., a : a + step], e_all[a : a + step], R, zb, rel_eps)
        for k, val in part.items():
            acc[k] = val if k not in acc else (np.maximum(acc[k], val) if k == "zmax" else acc[k] + val)
    # variance and MSE: means of the per-replicate statistics v_r, u_r (each [..., R]); moments of x·s
    # are the moments of x scaled, so the arrays are not rescaled
    d = tail_diagnostics(acc["v"])
    f = completion_factor(acc["v"], d)
    mom = {}
    for name, x, s in (("variance", acc["v"], R / ((R - 1) * C)), ("mse", acc["u"], 1 / C)):
        mean, _, m2, m3 = _moments(x, -1)
        mom[name] = _completed((mean * s, m2 * s**2, m3 * s**3), f)
    return _apply_tails(_assemble(acc, mom, R, C, z), d, acc["v"], acc["u"], R, C)


def _summary_one(g: np.ndarray, e: float, z: float, rel_eps: float) -> dict[str, np.ndarray]:
    """:func:`batch_summary` for a single coordinate g [R], with two temporaries instead of ~8.

    v_r = s·dev_r² and u_r = (dev_r + d)², d = m - e, so the central moments of v and u follow from
    w = dev² - m2 and w + 2d·dev, computed in place (the small-cell path: D = 1, large R)."""
    R = g.shape[0]
    m = g.mean()
    dev = g - m
    ein = np.einsum
    m2 = ein("r,r->", dev, dev) / R
    w = dev * dev
    m3 = ein("r,r->", w, dev) / R
    tails = tail_diagnostics(w)
    if tails["heavy"] > 0:  # rare: the truncated bounds need v_r and u_r, which the in-place algebra below loses
        return batch_summary(g[:, None], np.array([e]), z, rel_eps)
    acc = _bias_parts(np.atleast_1d(m), np.atleast_1d(m2), np.atleast_1d(m3), np.atleast_1d(e), R, z, rel_eps)
    f = completion_factor(w, tails)
    w -= m2  # w = dev² - mean(dev²)
    s = R / (R - 1)
    mom = {"variance": _completed((m2 * s, ein("r,r->", w, w) / R * s**2, ein("r,r,r->", w, w, w) / R * s**3), f)}
    d = m - e
    dev *= 2 * d
    dev += w  # u_r - mean(u) = w + 2 d dev
    mom["mse"] = _completed((m2 + d * d, ein("r,r->", dev, dev) / R, ein("r,r,r->", dev, dev, dev) / R), f)
    out = _assemble(acc, mom, R, 1, z)
    out.update({k: tails[k] for k in TAIL_KEYS})
    return out


def summarize(G: np.ndarray, exact: np.ndarray, z: float = Z95, rel_eps: float = 2.2e-16) -> dict[str, float]:
    """Metrics of one parameter: ``G`` [R, *shape] replicate estimates, ``exact`` [*shape].

    Replicates with any non-finite coordinate are dropped (counted in ``nan_fraction``).  ``rel_eps``
    (the measurement dtype's machine epsilon) floors the standard error used by ``bias_z`` at rounding
    level, so an exact estimator (zero variance) is not flagged for 1e-19 differences.  Besides the floats
    of :data:`METRIC_KEYS`: ``heavy_tail`` ("" | "fourth_moment" | "variance"), ``variance_ci_valid`` (a
    finite two-sided variance interval that does not rest on a fourth moment flagged as possibly infinite)
    and ``ci_method`` (:data:`CI_METHOD`, or :data:`CI_METHOD_HEAVY` for heavy-tailed estimates).
    """
    R0 = G.shape[0]
    G = np.asarray(G, dtype=np.float64).reshape(R0, -1)
    e = np.asarray(exact, dtype=np.float64).reshape(-1)
    ok = np.isfinite(G)
    n_bad = G.size - int(np.count_nonzero(ok))
    finite = np.all(ok, axis=1) if n_bad else None
    out: dict[str, float] = {
        "exact_grad": float(e.mean()),
        "nan_fraction": n_bad / G.size if G.size else 0.0,
        "n_replicates_used": float(R0 if finite is None else finite.sum()),
    }
    if finite is not None:
        G = G[finite]
    if G.shape[0] < 2:
        return {
            **out,
            **dict.fromkeys(METRIC_KEYS, math.nan),
            "heavy_tail": "",
            "variance_ci_valid": False,
            "ci_method": CI_METHOD,
        }
    res = _summary_one(G[:, 0], float(e[0]), z, rel_eps) if G.shape[1] == 1 else batch_summary(G, e, z, rel_eps)
    out.update({k: float(res[k]) for k in METRIC_KEYS})
    heavy = int(res["heavy"])
    out["heavy_tail"] = HEAVY_CODES[heavy]
    out["variance_ci_valid"] = bool(heavy == 0 and math.isfinite(out["variance_rel_halfwidth"]))
    out["ci_method"] = CI_METHOD_HEAVY if heavy else CI_METHOD
    return out


def worst_rel_halfwidth(G: dict[str, np.ndarray], exact: dict[str, np.ndarray] | None = None) -> float:
    """Largest relative 95% CI half-width of the variance over a cell's parameters — the precision loop's
    stopping statistic and ``precision_achieved``; NaN if a parameter has < 2 finite replicates or heavy
    tails (:func:`tail_diagnostics`: no valid two-sided interval, so more replicates cannot reach a target).

    Same interval as :func:`batch_summary`, computing only the variance part (``exact`` is not needed).
    """
    worst = 0.0
    for g in G.values():
        g = np.asarray(g, dtype=np.float64).reshape(g.shape[0], -1)
        g = g[np.all(np.isfinite(g), axis=1)]
        R, C = g.shape
        if R < 2:
            return math.nan
        v = np.zeros(R)
        step = max(1, (1 << 22) // R)
        for a in range(0, C, step):
            blk = g[:, a : a + step]
            x = np.ascontiguousarray(blk.T) if blk.shape[1] < 64 else blk  # contiguous reductions
            ax = 1 if x is not blk else 0
            dev = x - x.mean(ax, keepdims=True)
            v += (dev * dev).sum(1 - ax)
        d = tail_diagnostics(v)
        if d["heavy"] > 0:
            return math.nan
        mean, _, m2, m3 = _moments(v * (R / ((R - 1) * C)), -1)
        _, lo, hi = _hall(mean, *_completed((mean, m2, m3), completion_factor(v, d))[1:], R, Z95)
        var = float(mean)
        if var > 0:
            worst = max(worst, (float(hi) - max(float(lo), 0.0)) / (2 * var))
    return worst


# -- the statistics authority: one multiple-testing rule, one bias test, one efficiency interval ----------------
BIAS_ALPHA = 0.05  # family-wise level of a report's or a check's bias verdicts
BIAS_BATCHES = 30  # batch means of the bias test (t with BIAS_BATCHES - 1 degrees of freedom)
BIAS_LIGHT_XI = 0.25  # a rejection is judged where the opposite tail's 95% GPD shape bound is below this:
BIAS_LIGHT_Z = 1.6448536269514722  # evidence (one-sided 95%) of a finite fourth moment of that tail (calibrated)


def bonferroni_alpha(alpha: float, n_tests: int) -> float:
    """The per-test level of ``n_tests`` simultaneous tests at family-wise level ``alpha`` (Bonferroni)."""
    return alpha / max(int(n_tests), 1)


def t_critical(alpha: float, n_tests: int, df: int) -> float:
    """Two-sided Bonferroni critical value of Student's t with ``df`` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(1 - bonferroni_alpha(alpha, n_tests) / 2, df))


def n_batches(R: int, batches: int = BIAS_BATCHES) -> int:
    """Number of batch means used for R replicates (at least 2, at most R // 2)."""
    return max(2, min(int(batches), int(R) // 2))


def batch_means(G: np.ndarray, batches: int = BIAS_BATCHES) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean, batch-means standard error, degrees of freedom) per coordinate of G [..., R, C] (or [R]).

    The replicates are split into ``b`` equal consecutive batches (a remainder < b is left out of the SE); the
    SE is the standard deviation of the batch means over √b, with t(b − 1) critical values.
    """
    G = np.asarray(G, dtype=np.float64)
    if G.ndim == 1:
        G = G[:, None]
    R = G.shape[-2]
    b = n_batches(R, batches)
    n = (R // b) * b
    means = G[..., :n, :].reshape(*G.shape[:-2], b, n // b, G.shape[-1]).mean(-2)
    return G.mean(-2), means.std(-2, ddof=1) / math.sqrt(b), b - 1


def judged_directions(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Whether a bias-test rejection in the direction of ``d`` holds its level, for replicates g [..., R].

    A mean above the truth is what a sample that has not yet seen a heavy *lower* tail shows (and its standard
    error is small too), so a rejection upwards (d > 0) is judged only where the lower tail shows evidence of
    lightness, a rejection downwards only where the upper tail does (:func:`harness.stats.tails.side_light`: the 95% upper
    bound of the GPD shape of that tail below :data:`BIAS_LIGHT_XI`, i.e. a finite fourth moment).  A heavy tail on the side of the deviation only makes the test
    conservative: big values inflate the standard error with the mean."""
    upper, lower = side_light(g, BIAS_LIGHT_XI, BIAS_LIGHT_Z)
    return np.where(np.asarray(d) > 0, lower, upper)


def bias_tests(
    G: np.ndarray, exact: np.ndarray, rel_eps: float = 2.2e-16, batches: int = BIAS_BATCHES
) -> dict[str, np.ndarray]:
    """The bias test used everywhere a bias verdict is made (results rows, ``check``, tests, asv, report).

    G [..., R, C] (leading axes: independent replicate sets).  Per coordinate c: t_c = |m_c − e_c| / se_c with
    the batch-means SE (floored at rounding level of the dtype, so exact estimators read 0), two-sided p-value
    from t(b − 1); ``bias_p`` is the Bonferroni adjustment over the C coordinates, min(1, C · min_c p_c).
    ``bias_p_judged`` is the same minimum over the coordinates whose rejection the test can judge
    (:func:`judged_directions`; checked where C · p_c < BIAS_ALPHA, the only rejections any verdict can make),
    so ``bias_p_judged`` >= ``bias_p`` and they differ only where a small p-value may come from unseen tail mass.
    Returns bias_t (max_c t_c), bias_df, bias_p, bias_p_judged.
    """
    from scipy import stats

    G = np.asarray(G, dtype=np.float64)
    m, se, df = batch_means(G, batches)
    e = np.asarray(exact, dtype=np.float64).reshape(-1)
    se = np.maximum(se, rounding_level(rel_eps, e, m) + 1e-300)
    dev = m - e
    t = np.abs(dev) / se
    C = t.shape[-1]
    if C == 0:
        one = np.ones(t.shape[:-1])
        return {"bias_t": 0 * one, "bias_df": df * one, "bias_p": one, "bias_p_judged": one}
    adj = np.minimum(1.0, C * 2 * stats.t.sf(t, df))
    cand = adj < BIAS_ALPHA
    if cand.any():
        idx = np.nonzero(cand)  # (leading..., coordinate) of the candidate rejections
        g = np.moveaxis(G, -2, -1)[idx]  # [n_cand, R]
        ok = np.ones_like(cand)
        ok[idx] = judged_directions(g, dev[idx])
        adj_judged = np.where(ok, adj, 1.0)
    else:
        adj_judged = adj
    return {
        "bias_t": t.max(-1),
        "bias_df": np.full(t.shape[:-1], float(df)),
        "bias_p": adj.min(-1),
        "bias_p_judged": adj_judged.min(-1),
    }


def bias_test(
    G: np.ndarray, exact: np.ndarray, rel_eps: float = 2.2e-16, batches: int = BIAS_BATCHES
) -> dict[str, float]:
    """:func:`bias_tests` of one parameter's replicates G [R, *shape] as floats."""
    G = np.asarray(G, dtype=np.float64).reshape(G.shape[0], -1)
    return {k: float(v) for k, v in bias_tests(G, exact, rel_eps, batches).items()}


VERDICT_BIASED, VERDICT_UNJUDGED, VERDICT_CLEAN = "biased", "cannot judge", "no bias detected"


def bias_verdict(p: Any, p_judged: Any, level: Any) -> np.ndarray:
    """The one bias verdict of rows judged at per-row ``level``: "biased" where ``bias_p_judged`` < level;
    "cannot judge" where only ``bias_p`` is (the small p-value may come from tail mass the sample has not seen:
    neither biased nor clean); "no bias detected" otherwise.  NaN p-values read as 1 (nothing to judge)."""
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=1.0)
    pj = np.nan_to_num(np.asarray(p_judged, dtype=float), nan=1.0)
    pj = np.maximum(pj, p)
    level = np.asarray(level, dtype=float)
    return np.where(pj < level, VERDICT_BIASED, np.where(p < level, VERDICT_UNJUDGED, VERDICT_CLEAN))


def family_levels(cells: Any, judged: Any, alpha: float = BIAS_ALPHA) -> np.ndarray:
    """Per-row level of a report's bias verdicts (NaN for rows not judged).

    The family is the distinct cells judged — identities without the platform (backend, device, run), rows of
    declared-unbiased estimators with a p-value — so n tests, not one per platform duplicate and none for an
    estimator declared biased.  A cell measured on k platforms is one test: its rows are combined by Bonferroni
    (any platform below α/(n·k)), so the family-wise level stays α."""
    cells = np.asarray(cells, dtype=object)
    judged = np.asarray(judged, dtype=bool)
    out = np.full(cells.shape, np.nan)
    if not judged.any():
        return out
    keys, inv, counts = np.unique(cells[judged].astype(str), return_inverse=True, return_counts=True)
    out[judged] = alpha / (len(keys) * counts[inv])
    return out


def time_se(median: Any, iqr: Any, n: Any) -> Any:
    """Standard error of a median time from its IQR: 1.2533 · (IQR / 1.349) / √n (normal approximation)."""
    return 1.2533141373155 * (np.asarray(iqr) / 1.3489795003921634) / np.sqrt(np.maximum(n, 1))


def efficiency_interval(
    variance: Any, var_low: Any, var_high: Any, time_median: Any, time_iqr: Any, time_samples: Any, z: float = Z95
) -> tuple[Any, Any, Any]:
    """(efficiency, low, high) of variance × time: the variance interval's relative half-widths combined in
    quadrature with the time's relative standard error (delta method).  The one efficiency interval."""
    v, t = np.asarray(variance, dtype=float), np.asarray(time_median, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rt = z * time_se(t, np.asarray(time_iqr, dtype=float), np.asarray(time_samples, dtype=float)) / t
        rlo = np.where(v > 0, 1 - np.asarray(var_low, dtype=float) / v, 0.0)
        rhi = np.where(v > 0, np.asarray(var_high, dtype=float) / v - 1, 0.0)
    rt = np.nan_to_num(rt, nan=0.0, posinf=0.0)
    eff = v * t
    return eff, eff * np.maximum(1 - np.hypot(rlo, rt), 0.0), eff * (1 + np.hypot(rhi, rt))


# -- streaming consumers (the race of `stochgrad recommend`): variance from pooled per-replicate statistics -------
def replicate_variances(G: np.ndarray) -> np.ndarray:
    """v_r = R/(R−1) · mean_c (G_rc − m_c)² of one set G [R, C] (R >= 2): the per-replicate statistics whose mean is
    the ``variance`` column and whose spread gives its interval (module docstring).  Each v_r has expectation the
    variance, so the v of independent sets (rounds of a race) can be pooled by concatenation."""
    G = np.asarray(G, dtype=np.float64).reshape(G.shape[0], -1)
    R, C = G.shape
    dev = G - G.mean(0)
    return np.einsum("rc,rc->r", dev, dev) * (R / ((R - 1) * C))


def variance_interval(v: np.ndarray, z: float = Z95, level: float = BOUND_LEVEL) -> dict[str, Any]:
    """``variance`` = mean(v) and its interval from per-replicate statistics v [R] (:func:`replicate_variances`),
    with :func:`summarize`'s rules: Hall's interval at ``z`` on the tail-completed moments; where the tail is heavy
    (:func:`tail_diagnostics`) the one-sided lower bound at ``level`` (:func:`truncated_lower_bound`), upper limit
    NaN and ``valid`` False.  Returns variance, low, high, heavy_tail ("" | "fourth_moment" | "variance"), valid,
    tail_index_ucb, tail_index_lcb."""
    v = np.asarray(v, dtype=np.float64)
    R = v.shape[-1]
    d = tail_diagnostics(v)
    mean, _, m2, m3 = _moments(v, -1)
    _, lo, hi = _hall(*_completed((mean, m2, m3), completion_factor(v, d)), R, z)
    heavy = int(d["heavy"])
    low = float(truncated_lower_bound(v, level)) if heavy else max(float(lo), 0.0)
    return {
        "variance": float(mean),
        "low": low,
        "high": math.nan if heavy else float(hi),
        "heavy_tail": HEAVY_CODES[heavy],
        "valid": heavy == 0 and math.isfinite(float(hi)),
        "tail_index_ucb": float(d["tail_index_ucb"]),
        "tail_index_lcb": float(d["tail_index_lcb"]),
    }


def ratio_interval(a: Any, a_low: Any, a_high: Any, b: Any, b_low: Any, b_high: Any) -> tuple[Any, Any, Any]:
    """(a/b, low, high): the factor between two independent estimates from their intervals, the log half-widths
    combined in quadrature (low from a's lower and b's upper side; each side at the level of the given
    intervals).  A lower limit a_low <= 0 gives low 0; b_low <= 0 gives high inf; NaN limits propagate."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = a / b
        la = np.log(a / np.asarray(a_low, dtype=float))  # >= 0; inf where a_low <= 0
        ua = np.log(np.asarray(a_high, dtype=float) / a)
        lb = np.log(b / np.asarray(b_low, dtype=float))
        ub = np.log(np.asarray(b_high, dtype=float) / b)
        low = r * np.exp(-np.hypot(la, ub))
        high = r * np.exp(np.hypot(ua, lb))
    return r, low, high
