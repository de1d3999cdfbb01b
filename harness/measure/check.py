"""Statistical validation of an estimator against exact gradients (the registry-driven tests and ``stochgrad check``).

Unbiasedness: every coordinate's t = (mean − exact) / SE must satisfy |t| <= t_crit, where SE comes from batch
means (:func:`harness.stats.metrics.batch_means`, honest for heavy-tailed estimators) and t_crit is the Student-t
quantile Bonferroni-corrected over all coordinates tested (family-wise false-alarm rate ``alpha``) — the same
test as the results' ``bias_p`` (:mod:`harness.stats.metrics` is the one statistics authority).  A rejection is "biased"
only where the tail opposite to the deviation shows evidence of lightness (:func:`harness.stats.metrics.judged_directions`);
otherwise the verdict is "cannot judge": a sample that has not yet seen a heavy tail has a shifted mean and a small
standard error, and no test holds its level there (docs/notes/measurement.md, "Bias verdicts").
Power: the test must be able to see a bias of ``detectable`` × the parameter's exact-gradient RMS (at least half
the RMS over all parameters, so a parameter whose exact gradient is 0 still gets a scale; floor ``abs_floor``):
the half-width t_crit·SE of every coordinate must be below that, else the verdict is ``underpowered``.  An
underpowered result is re-run (at most twice, fresh seeds) with the replicate count its measured standard errors
call for, up to ``max_R``: the power requirement is never relaxed.  A test that cannot fail is not a test.
:data:`POLICY` holds the defaults shared by the tests and ``stochgrad check``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.backends import get_backend
from harness.measure.runner import MeasureRequest, estimate
from harness.problems import Problem, ProblemSpec, example_problems
from harness.registry import Implementation, applies, get_estimator, make_context
from harness.stats.metrics import batch_means, bonferroni_z, judged_directions, n_batches, t_critical


@dataclass(frozen=True)
class CheckPolicy:
    """How an estimator is checked: level, power requirement and replicate escalation."""

    L: int = 4
    R: int = 20_000
    max_R: int = 1_000_000
    alpha: float = 1e-3
    detectable: float = 0.15
    abs_floor: float = 1e-3
    batches: int = 100
    retries: int = 2

    def with_(self, **kw: Any) -> CheckPolicy:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


POLICY = CheckPolicy()


def z_critical(alpha: float, n_tests: int) -> float:
    """Two-sided Bonferroni critical value of N(0, 1) (family-wise level ``alpha`` over ``n_tests``)."""
    return bonferroni_z(n_tests, 1 - alpha)


@dataclass
class CheckResult:
    estimator: str
    backend: str
    problem: str
    L: int
    R: int
    verdict: str  # pass | biased | cannot judge | underpowered | nan | error | mutates (changes its inputs)
    max_abs_z: float
    z_crit: float
    halfwidth_ratio: float  # max over coords of t_crit*SE / detectable bias (must be <= 1)
    variance: dict[str, float] = field(default_factory=dict)
    bias: dict[str, float] = field(default_factory=dict)
    detail: str = ""

    def line(self) -> str:
        var = " ".join(f"Var[{k}]={v:.4g}" for k, v in self.variance.items())
        return (
            f"{self.verdict:12s} |t|max={self.max_abs_z:6.2f} (crit {self.z_crit:.2f}) "
            f"power={self.halfwidth_ratio:5.2f} {var}  {self.problem} L={self.L} R={self.R} {self.detail}"
        )


def draw(
    spec: Implementation,
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
    req = MeasureRequest(spec, problem, L=L, R=R, seed=seed, hyper=dict(hyper or {}), dtype=dtype, jit=jit)
    return estimate(req)[0]


def check_problem(
    spec: Implementation,
    problem: Problem,
    *,
    policy: CheckPolicy = POLICY,
    seed: int = 0,
    n_tests: int | None = None,
    hyper: dict[str, Any] | None = None,
    dtype: str = "float64",
    jit: bool = False,
    **overrides: Any,
) -> CheckResult:
    """t-test every coordinate of every parameter; ``n_tests`` overrides the Bonferroni count.

    ``overrides`` (L, R, max_R, alpha, detectable, abs_floor, batches) replace fields of ``policy``; ``max_R=None``
    or ``max_R <= R`` disables the escalation.
    """
    max_R = overrides.pop("max_R", policy.max_R)
    pol = policy.with_(**overrides)
    kw = dict(pol=pol, n_tests=n_tests, hyper=hyper, dtype=dtype, jit=jit)
    R = pol.R
    res = _check_once(spec, problem, R=R, seed=seed, **kw)
    for attempt in range(1, pol.retries + 1):  # re-runs, each sized from the measured standard errors
        if not (max_R and res.verdict == "underpowered" and max_R > res.R):
            break
        R = int(min(max_R, math.ceil(res.R * res.halfwidth_ratio**2 * 1.3)))
        res = _check_once(spec, problem, R=R, seed=seed + attempt, **kw)
    return res


def _fail(spec: Implementation, problem: Problem, L: int, R: int, verdict: str, zc: float, detail: str) -> CheckResult:
    return CheckResult(spec.name, spec.backend, problem.label(), L, R, verdict, math.nan, zc, math.nan, detail=detail)


def _check_once(
    spec: Implementation,
    problem: Problem,
    *,
    R: int,
    seed: int,
    pol: CheckPolicy,
    n_tests: int | None,
    hyper: dict[str, Any] | None,
    dtype: str,
    jit: bool,
) -> CheckResult:
    L = max(pol.L, spec.min_samples)
    try:
        G = draw(spec, problem, L=L, R=R, seed=seed, hyper=hyper, dtype=dtype, jit=jit)
    except (Exception, SystemExit) as exc:  # a SystemExit from an estimator is its failure, not the check's exit
        return _fail(spec, problem, L, R, "error", math.nan, f"{type(exc).__name__}: {exc}")
    ex = problem.exact.grads
    coords = sum(int(np.prod(ex[k].shape)) for k in ex)
    zc = t_critical(pol.alpha, n_tests or coords, df=n_batches(R, pol.batches) - 1)
    all_rms = math.sqrt(np.mean(np.concatenate([ex[k].ravel() ** 2 for k in ex])))
    max_z, ratio, variance, bias = 0.0, 0.0, {}, {}
    judged = False  # a rejection the tails let the test stand behind
    for k, e in ex.items():
        g = G[k].reshape(G[k].shape[0], -1)
        if not np.all(np.isfinite(g)):
            return _fail(spec, problem, L, R, "nan", zc, f"non-finite estimates for {k} (seed={seed})")
        m, se, _ = batch_means(g, pol.batches)
        d = m - e.ravel()
        se = np.maximum(se, 1e-13 * (np.abs(e.ravel()) + np.abs(m)) + 1e-300)  # rounding floor (exact estimators)
        t = np.abs(d) / se
        max_z = max(max_z, float(t.max()))
        beyond = np.nonzero(t > zc)[0]
        if beyond.size and not judged:
            judged = bool(judged_directions(g[:, beyond].T, d[beyond]).any())
        tol = max(pol.detectable * max(math.sqrt(np.mean(e**2)), 0.5 * all_rms), pol.abs_floor)
        ratio = max(ratio, float((zc * se).max() / tol))
        variance[k] = float(g.var(0, ddof=1).mean())
        bias[k] = float(np.sqrt(np.mean(d**2)))
    verdict = ("biased" if judged else "cannot judge") if max_z > zc else ("underpowered" if ratio > 1 else "pass")
    return CheckResult(
        spec.name, spec.backend, problem.label(), L, R, verdict, max_z, zc, ratio, variance, bias, detail=f"seed={seed}"
    )


def _digest(B: Any, x: Any) -> str:
    a = np.ascontiguousarray(B.to_numpy(x))
    return f"{a.dtype}{a.shape}" + hashlib.sha256(a.tobytes()).hexdigest()


def mutated_inputs(
    spec: Implementation, problem: Problem, *, L: int, seed: int = 0, dtype: str = "float64"
) -> list[str]:
    """The inputs one call of ``spec`` changes: ``params[...]`` / ``op[...]`` entries written in place, rebound,
    added or removed (empty: none).

    In a run an estimator receives read-only NumPy views (a write raises) or watched torch tensors (a write fails
    the call and is undone), so it cannot corrupt later cells; here it gets writable copies, digested (SHA-256) before and after
    the call, so that the write is seen and reported rather than refused.  JAX arrays are immutable: only rebinding
    is possible there."""
    B = get_backend(spec.backend)
    ctx = make_context(
        problem, B, L=L, R=2, noise=B.noise(seed, dtype, "cpu"), hyper=spec.defaults(), dtype=dtype, device="cpu"
    )

    def writable(d: dict[str, Any]) -> dict[str, Any]:
        return {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in d.items()}

    if spec.backend == "numpy":
        ctx = ctx.with_(params=writable(ctx.params), op=writable(ctx.op))
    ctx = B.private_inputs(ctx, ctx.noise)  # its own dicts (torch tensors are fresh from make_context)
    given = {f"params[{k!r}]": v for k, v in ctx.params.items()}
    given |= {f"op[{k!r}]": v for k, v in ctx.op.items() if not isinstance(v, str | int | float | bool)}
    before = {n: _digest(B, v) for n, v in given.items()}
    holders = {"params": ctx.params, "op": ctx.op}
    orig = {n: dict(d) for n, d in holders.items()}
    with contextlib.suppress(
        Exception, SystemExit
    ):  # failures are the bias test's to report: only the changes matter here
        spec.fn(ctx)
    changed = [n for n, v in given.items() if _digest(B, v) != before[n]]
    for n, d in holders.items():
        changed += [f"{n}[{k!r}] (rebound)" for k in orig[n].keys() & d.keys() if d[k] is not orig[n][k]]
        changed += [f"{n}[{k!r}] (removed)" for k in orig[n].keys() - d.keys()]
        changed += [f"{n}[{k!r}] (added)" for k in d.keys() - orig[n].keys()]
    return changed


def applicable_problems(spec: Implementation) -> list[ProblemSpec]:
    """Shipped example problems this estimator applies to (the registry's matcher on each problem's traits)."""
    return [p for p in example_problems() if applies(spec, p.traits())[0]]


def iter_check_estimator(name: str, backend: str, policy: CheckPolicy = POLICY, **kw: Any) -> Iterator[CheckResult]:
    """Check one implementation on every applicable shipped problem (Bonferroni over all their coordinates),
    yielding each problem's result as it completes."""
    spec = get_estimator(name, backend)
    probs = applicable_problems(spec)
    n_tests = sum(sum(int(np.prod(v.shape)) for v in p.build().exact.grads.values()) for p in probs)
    for p in probs:
        problem = p.build()
        changed = mutated_inputs(spec, problem, L=max(policy.L, spec.min_samples), seed=kw.get("seed", 0))
        if changed:
            L = max(policy.L, spec.min_samples)
            yield _fail(spec, problem, L, 2, "mutates", math.nan, f"changes its inputs in place: {', '.join(changed)}")
            continue
        yield check_problem(spec, problem, policy=policy, n_tests=n_tests, **kw)


def check_estimator(name: str, backend: str, policy: CheckPolicy = POLICY, **kw: Any) -> list[CheckResult]:
    """Check one implementation on every applicable shipped problem (Bonferroni over all their coordinates)."""
    return list(iter_check_estimator(name, backend, policy, **kw))


def overall_verdict(results: list[CheckResult], unbiased: bool) -> str:
    """PASS, FAIL, CANNOT JUDGE or UNDERPOWERED for one implementation's results (declared-biased estimators only
    fail on errors and non-finite output; their measured bias is reported, as declared)."""
    verdicts = {r.verdict for r in results}
    if verdicts & {"error", "nan", "mutates"} or (unbiased and "biased" in verdicts):
        return "FAIL"
    if unbiased and "cannot judge" in verdicts:
        return "CANNOT JUDGE"
    if unbiased and "underpowered" in verdicts:
        return "UNDERPOWERED"
    return "PASS"
