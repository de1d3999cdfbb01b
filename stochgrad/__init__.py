"""stochgrad: which Monte Carlo gradient estimator should I use?  The public Python API.

    import stochgrad as sg

    p = sg.problem("normal", loc=0.5, scale=1.5, objective="quadratic")
    sg.measure("pathwise", p, L=1, R=100_000)          # one tidy row per parameter, with 95% intervals
    run = sg.run("suites/smoke.toml", backends=["numpy"])
    run.results, run.meta, run.report("report.html")

Estimator plugins declare themselves once with :func:`register_estimator` and attach one implementation per
backend; every implementation receives a :class:`Context` and returns ``{param: array [R, *param_shape]}``.
This package is the only import that plugins, notebooks and the docs use; ``harness`` and ``estimators`` are
internal.
"""

from __future__ import annotations

from harness.fits import FitCache, FittedState
from harness.measure.context import Context
from harness.problems import Problem
from harness.registry import Estimator, Hyper, RegistryError, register_estimator
from stochgrad.api import (
    MeasureError,
    Run,
    compare,
    get_estimator,
    list_distributions,
    list_estimators,
    list_objectives,
    load_run,
    measure,
    problem,
    run,
)

__version__ = "0.2.0"

__all__ = [
    "Context",
    "Estimator",
    "FitCache",
    "FittedState",
    "Hyper",
    "MeasureError",
    "Problem",
    "RegistryError",
    "Run",
    "__version__",
    "compare",
    "get_estimator",
    "list_distributions",
    "list_estimators",
    "list_objectives",
    "load_run",
    "measure",
    "problem",
    "register_estimator",
    "run",
]
