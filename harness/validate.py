"""Statistical validation of an estimator against exact gradients (used by tests and ``stochgrad check``).

Unbiasedness: every coordinate's t = (mean - exact) / SE must satisfy |t| <= t_crit, with t_crit the
Student-t quantile (batch means: ``batches`` - 1 degrees of freedom) Bonferroni-corrected over all
coordinates tested (family-wise false-alarm rate ``alpha``).  SE comes from batch means (``batches``
groups of replicates), which stays honest for heavy-tailed estimators.
Power: the test must be able to see a bias of ``detectable`` (10%) × the parameter's exact-gradient RMS
(at least half the RMS over all parameters, so a parameter whose exact gradient is 0 still gets a scale;
floor ``abs_floor``): the half-width z_crit·SE of every coordinate must be below that, else the verdict is
``underpowered`` rather than a pass.  A test that cannot fail is not a test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from harness.problems import Problem, ProblemSpec, example_problems
from harness.registry import EstimatorSpec, get_estimator
from harness.runner import estimate


def z_critical(alpha: float, n_tests: int) -> float:
    """Two-sided Bonferroni critical value."""
    return NormalDist().inv_cdf(1 - alpha / (2 * max(n_tests, 1)))


def t_critical(alpha: float, n_tests: int, df: int) -> float:
    """Two-sided Bonferroni critical value of Student's t (batch means have ``df`` degrees of freedom)."""
    from scipy import stats

    return float(stats.t.ppf(1 - alpha / (2 * max(n_tests, 1)), df))


def _n_batches(R: int, batches: int) -> int:
    return max(2, min(batches, R // 2))


def batch_se(G: np.ndarray, batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and batch-means standard error per coordinate of G [R, C]."""
    R = G.shape[0]
    b = _n_batches(R, batches)
    n = (R // b) * b
    means = G[:n].reshape(b, n // b, -1).mean(1)
    return G.mean(0), means.std(0, ddof=1) / math.sqrt(b)


@dataclass
class CheckResult:
    estimator: str
    backend: str
    problem: str
    L: int
    R: int
    verdict: str  # pass | biased | underpowered | nan | error
    max_abs_z: float
    z_crit: float
    halfwidth_ratio: float  # max over coords of z_crit*SE / detectable bias (must be <= 1)
    variance: dict[str, float] = field(default_factory=dict)
    bias: dict[str, float] = field(default_factory=dict)
    detail: str = ""

    def line(self) -> str:
        var = " ".join(f"Var[{k}]={v:.4g}" for k, v in self.variance.items())
        return (
            f"{self.verdict:12s} |z|max={self.max_abs_z:6.2f} (crit {self.z_crit:.2f}) "
            f"power={self.halfwidth_ratio:5.2f} {var}  {self.problem} L={self.L} R={self.R} {self.detail}"
        )


def draw(
    spec: EstimatorSpec,
    problem: Problem,
    *,
    L: int,
    R: int,
    seed: int,
    hyper: dict[str, Any] | None = None,
    dtype: str = "float64",
    jit: bool = False,
) -> dict[str, np.ndarray]:
    """R replicate estimates as float64 NumPy arrays (JAX un-jitted by default: tests compile nothing)."""
    return estimate(spec, problem, L=L, R=R, seed=seed, hyper=hyper, dtype=dtype, jit=jit)[0]


def check_problem(
    spec: EstimatorSpec,
    problem: Problem,
    *,
    L: int = 4,
    R: int = 20000,
    seed: int = 0,
    alpha: float = 1e-3,
    n_tests: int | None = None,
    detectable: float = 0.1,
    abs_floor: float = 1e-3,
    batches: int = 100,
    hyper: dict[str, Any] | None = None,
    dtype: str = "float64",
    max_R: int | None = None,
    jit: bool = False,
) -> CheckResult:
    """z-test every coordinate of every parameter; ``n_tests`` overrides the Bonferroni count.

    With ``max_R``, an underpowered pass is repeated (at most twice) with a fresh seed and the replicate
    count its measured standard errors call for (at most ``max_R``): the power requirement is never relaxed.
    """
    kw = dict(
        alpha=alpha,
        n_tests=n_tests,
        detectable=detectable,
        abs_floor=abs_floor,
        batches=batches,
        hyper=hyper,
        dtype=dtype,
        jit=jit,
    )
    res = _check_once(spec, problem, L=L, R=R, seed=seed, **kw)
    for attempt in range(1, 3):  # at most two re-runs, each sized from the measured standard errors
        if not (max_R and res.verdict == "underpowered" and max_R > res.R):
            break
        R = int(min(max_R, math.ceil(res.R * res.halfwidth_ratio**2 * 1.3)))
        res = _check_once(spec, problem, L=L, R=R, seed=seed + attempt, **kw)
    return res


def _fail(spec: EstimatorSpec, problem: Problem, L: int, R: int, verdict: str, zc: float, detail: str) -> CheckResult:
    return CheckResult(spec.name, spec.backend, problem.label(), L, R, verdict, math.nan, zc, math.nan, detail=detail)


def _check_once(
    spec: EstimatorSpec,
    problem: Problem,
    *,
    L: int,
    R: int,
    seed: int,
    alpha: float,
    n_tests: int | None,
    detectable: float,
    abs_floor: float,
    batches: int,
    hyper: dict[str, Any] | None,
    dtype: str,
    jit: bool,
) -> CheckResult:
    L = max(L, spec.min_samples)
    try:
        G = draw(spec, problem, L=L, R=R, seed=seed, hyper=hyper, dtype=dtype, jit=jit)
    except Exception as exc:
        return _fail(spec, problem, L, R, "error", math.nan, f"{type(exc).__name__}: {exc}")
    ex = problem.exact.grads
    coords = sum(int(np.prod(ex[k].shape)) for k in ex)
    zc = t_critical(alpha, n_tests or coords, df=_n_batches(R, batches) - 1)
    all_rms = math.sqrt(np.mean(np.concatenate([ex[k].ravel() ** 2 for k in ex])))
    max_z, ratio, variance, bias = 0.0, 0.0, {}, {}
    for k, e in ex.items():
        g = G[k].reshape(G[k].shape[0], -1)
        if not np.all(np.isfinite(g)):
            return _fail(spec, problem, L, R, "nan", zc, f"non-finite estimates for {k} (seed={seed})")
        m, se = batch_se(g, batches)
        d = m - e.ravel()
        se = np.maximum(se, 1e-13 * (np.abs(e.ravel()) + np.abs(m)) + 1e-300)  # rounding floor (exact estimators)
        z = np.abs(d) / se
        max_z = max(max_z, float(z.max()))
        tol = max(detectable * max(math.sqrt(np.mean(e**2)), 0.5 * all_rms), abs_floor)
        ratio = max(ratio, float((zc * se).max() / tol))
        variance[k] = float(g.var(0, ddof=1).mean())
        bias[k] = float(np.sqrt(np.mean(d**2)))
    verdict = "biased" if max_z > zc else ("underpowered" if ratio > 1 else "pass")
    return CheckResult(
        spec.name, spec.backend, problem.label(), L, R, verdict, max_z, zc, ratio, variance, bias, detail=f"seed={seed}"
    )


def applicable_problems(spec: EstimatorSpec) -> list[ProblemSpec]:
    """Shipped example problems this estimator declares it applies to."""
    from harness.suite import estimator_applies

    return [p for p in example_problems() if estimator_applies(spec, p)[0]]


def check_estimator(name: str, backend: str, **kw: Any) -> list[CheckResult]:
    spec = get_estimator(name, backend)
    probs = applicable_problems(spec)
    n_tests = sum(sum(int(np.prod(v.shape)) for v in p.build().exact.grads.values()) for p in probs)
    return [check_problem(spec, p.build(), n_tests=n_tests, **kw) for p in probs]
