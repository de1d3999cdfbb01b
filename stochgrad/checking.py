"""Validating an estimator: its bias against exact gradients on every applicable shipped problem, with a power check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness import registry
from harness.measure.check import (
    POLICY,
    CheckPolicy,
    CheckResult,
    applicable_problems,
    iter_check_estimator,
    overall_verdict,
)
from harness.problems import DISTRIBUTIONS

__all__ = ["CheckError", "CheckPolicy", "CheckReport", "CheckResult", "ImplementationCheck", "check"]


class CheckError(ValueError):
    """A check that cannot be made: a backend the estimator is not implemented on, or no applicable problem.

    ``key`` names the offending argument (``"backend"``) or is None."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


@dataclass
class ImplementationCheck:
    """One implementation's check: the declaration it is held to and one :class:`CheckResult` per problem.

    A result's ``verdict`` is ``pass``, ``biased``, ``underpowered``, ``nan`` or ``error``; ``line()`` formats it."""

    estimator: str
    backend: str
    unbiased: bool  # declared unbiased at default hyperparameters
    reference: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL`` or ``UNDERPOWERED`` (a declared-biased estimator fails only on errors and NaNs)."""
        return overall_verdict(self.results, self.unbiased)

    def header(self) -> str:
        """``name [backend] — unbiased; ref: ...``, the line ``stochgrad check`` prints first."""
        kind = "unbiased" if self.unbiased else "declared biased"
        return f"{self.estimator} [{self.backend}] — {kind}; ref: {self.reference or '-'}"

    def line(self, result: CheckResult) -> str:
        """One result's line, a measured bias of a declared-biased estimator read as ``biased (as declared)``."""
        text = result.line()
        if not self.unbiased and result.verdict == "biased":
            text = text.replace(result.verdict, "biased (as declared)", 1)
        return text


@dataclass
class CheckReport:
    """The outcome of :func:`check`: one :class:`ImplementationCheck` per backend, under ``policy``."""

    estimator: str
    policy: CheckPolicy
    checks: list[ImplementationCheck] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``FAIL`` if any backend fails, else ``UNDERPOWERED`` if any is underpowered, else ``PASS``."""
        verdicts = {c.verdict for c in self.checks}
        return next((v for v in ("FAIL", "UNDERPOWERED") if v in verdicts), "PASS")

    @property
    def results(self) -> list[CheckResult]:
        """Every problem's result, backend after backend."""
        return [r for c in self.checks for r in c.results]


def check(
    estimator: str,
    backend: str | Sequence[str] | None = None,
    *,
    replicates: int | None = None,
    max_replicates: int | None = None,
    samples: int | None = None,
    seed: int = 0,
    callback: Callable[[ImplementationCheck, CheckResult | None], None] | None = None,
) -> CheckReport:
    """Check an estimator (what ``stochgrad check`` does) and return the structured :class:`CheckReport`.

    Every implementation (``backend``: one name or several; default every backend it is registered on) is run on
    every shipped example problem it declares it applies to, with ``samples`` = L (default 4) and ``replicates`` = R
    (default 20 000).  Each coordinate's bias is t-tested (Bonferroni over all coordinates, family-wise level 1e-3);
    the test must be able to see a 15% bias, else R is raised from the measured standard errors up to
    ``max_replicates`` (default 1 000 000) and the verdict is ``UNDERPOWERED`` if it still cannot.
    ``callback(implementation_check, result)`` is called with ``result=None`` when an implementation's check starts,
    then with each problem's result as it completes (the command line prints from it).

    Raises :class:`RegistryError` for an unknown estimator and :class:`CheckError` for a backend it has no
    implementation on, or when it applies to no shipped problem.
    """
    est = registry.get_declaration(estimator)
    backends = [backend] if isinstance(backend, str) else list(backend or est.backends)
    bad = [b for b in backends if b not in est.backends]
    if bad:
        raise CheckError(f"{estimator} has no {bad[0]!r} implementation; available: {est.backends}", key="backend")
    impls = [est.impls[b] for b in backends]
    if not applicable_problems(impls[0]):
        raise CheckError(
            f"estimator {estimator!r} (distributions {list(est.distributions)}, requires {list(est.requires)}) "
            f"applies to no shipped problem; valid distribution names: {sorted(DISTRIBUTIONS)}"
        )
    policy = POLICY.with_(R=replicates, L=samples, max_R=max_replicates)
    report = CheckReport(estimator, policy)
    for impl in impls:
        ic = ImplementationCheck(impl.name, impl.backend, est.is_unbiased(), impl.reference)
        report.checks.append(ic)
        if callback is not None:
            callback(ic, None)
        for res in iter_check_estimator(impl.name, impl.backend, policy=policy, seed=seed):
            ic.results.append(res)
            if callback is not None:
                callback(ic, res)
    return report
