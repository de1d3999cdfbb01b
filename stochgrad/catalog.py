"""What is registered: estimators, distributions, objectives, workloads, backends and the plugins that failed."""

from __future__ import annotations

from typing import Any

from harness import registry
from harness import workloads as _workloads
from harness.backends import backend_status
from harness.measure.cost import measure_formula
from harness.problems import DISTRIBUTIONS, OBJECTIVES
from harness.workloads import Workload

__all__ = [
    "catalog",
    "failed_plugins",
    "get_estimator",
    "get_workload",
    "list_distributions",
    "list_estimators",
    "list_objectives",
    "list_workloads",
]


def list_estimators(pattern: str = "*", backend: str | None = None, distribution: str | None = None) -> list[str]:
    """Names of registered estimators matching the fnmatch ``pattern`` (implemented on ``backend``, applying to
    ``distribution``), e.g. ``list_estimators("score*", backend="jax")``."""
    impls = registry.implementations(pattern, backend=backend, distribution=distribution)
    return sorted({i.name for i in impls})


def get_estimator(name: str) -> registry.Estimator:
    """The declaration of estimator ``name``: capabilities, ``backends``, ``doc`` and ``reference``."""
    return registry.get_declaration(name)


def list_distributions() -> list[str]:
    """Distribution names (torch.distributions spelling)."""
    return sorted(DISTRIBUTIONS)


def list_objectives() -> list[str]:
    """Objective names."""
    return sorted(OBJECTIVES)


def list_workloads(pattern: str = "*") -> list[str]:
    """Names of registered workloads (built-in, registered in this process, or from ``stochgrad.workloads`` entry
    points) matching the fnmatch ``pattern``."""
    return _workloads.workload_names(pattern)


def get_workload(name: str) -> Workload:
    """The registered :class:`Workload` ``name`` (``WorkloadError`` naming the valid ones otherwise)."""
    return _workloads.get_workload(name)


def failed_plugins() -> dict[str, str]:
    """Plugins that failed to load, ``{"entry-point name (value)": one-line reason}``: estimator plugins, then
    workload plugins (their keys end in ``[workload]``).  A failed plugin registered nothing; nothing else stops."""
    out = dict(registry.failed_plugins())
    out.update({f"{k} [workload]": v for k, v in _workloads.failed_plugins().items()})
    return out


def measured_costs(pattern: str = "*") -> dict[str, dict[str, Any]]:
    """Each matching estimator's cost per L-sample estimate, *measured*: evaluations counted by the Context on a grid
    of (L, D[, K]) and fitted to formulas (:mod:`harness.measure.cost`; nothing is declared).  ``{name: {problem,
    f_evals, grad_evals, aux_evals, evals, note}}`` with formulas in L, D, K as strings."""
    out = {}
    for name in sorted({s.name for s in registry.implementations(pattern)}):
        try:
            m = measure_formula(name)
        except Exception as exc:  # a broken plugin's row says so; the catalog still lists everything else
            out[name] = {"problem": "", "note": f"not measured: {type(exc).__name__}: {exc}"[:200]}
            continue
        out[name] = {"problem": m.problem, **m.formulas, "evals": m.evals if not m.note else "", "note": m.note}
    return out


def catalog(pattern: str = "*", cost: bool = True) -> dict[str, Any]:
    """Everything ``stochgrad list [PATTERN] --json`` shows, as JSON-ready data.

    Keys: ``estimators`` (one summary per implementation matching ``pattern``: name, backend, capabilities,
    hyperparameters with defaults and ranges, reference), ``costs`` (with ``cost``: :func:`measured_costs`, each
    estimator's measured cost as formulas in L, D, K), ``distributions`` (parameters, support, discrete),
    ``objectives`` (parameters with defaults, supports, doc), ``workloads`` (latent, backends, doc), ``backends``
    (availability and devices) and ``failed_plugins`` (:func:`failed_plugins`)."""
    return {
        "estimators": [s.summary() for s in registry.implementations(pattern)],
        "costs": measured_costs(pattern) if cost else {},
        "distributions": {
            n: {"params": list(d.params), "support": d.support, "discrete": d.discrete}
            for n, d in sorted(DISTRIBUTIONS.items())
        },
        "objectives": {
            n: {"params": dict(o.params), "supports": sorted(o.supports), "doc": o.doc}
            for n, o in sorted(OBJECTIVES.items())
        },
        "workloads": {
            n: {"latent": w.latent, "backends": list(w.backends), "doc": w.doc}
            for n, w in ((n, _workloads.get_workload(n)) for n in _workloads.workload_names())
        },
        "backends": backend_status(),
        "failed_plugins": failed_plugins(),
    }
