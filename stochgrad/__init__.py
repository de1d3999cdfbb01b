"""stochgrad: which Monte Carlo gradient estimator should I use?  The public Python API.

    import stochgrad as sg

    p = sg.problem("normal", loc=0.5, scale=1.5, objective="quadratic")
    sg.measure("pathwise", p, L=1, R=100_000)          # one tidy row per parameter, with 95% intervals
    run = sg.run("suites/smoke.toml", backends=["numpy"])
    run.results, run.meta, run.report("report.html")
    sg.check("pathwise", backend="numpy").verdict        # PASS / FAIL / UNDERPOWERED, with every result
    sg.train("suites/train.toml", out="results/train")   # training curves and final bounds
    sg.report([run.dir], "report.html")
    sg.recommend("normal(loc=0.5,scale=1.5)/cos/D=10", budget_s=30).pick   # raced at equal cost

Estimator plugins declare themselves once with :func:`register_estimator` and attach one implementation per
backend; every implementation receives a :class:`Context` and returns ``{param: array [R, *param_shape]}``.
Workloads (models with one stochastic node) come from a PyTorch or JAX model and its data in a few lines
(:func:`workload_from_torch`, :func:`workload_from_jax`), or subclass :class:`Workload` for full control and register
with :func:`register_workload` or through the ``stochgrad.workloads`` entry point.  This package is the only import
that plugins, notebooks, the docs, the built-in estimators and the command line use; ``harness`` and
``estimators`` are internal.
"""

from __future__ import annotations

from harness.backends import get_backend
from harness.fits import FitCache, FittedState
from harness.problems import Problem, ProblemError
from harness.registry import BACKENDS, Estimator, Hyper, RegistryError, register_estimator
from harness.registry.context import Context
from harness.results.ranking import DEFAULT_RANK_BY, RANK_BY
from harness.runs.executors import ExecutorError
from harness.runs.output import OutputError
from harness.runs.store import RunDirError
from harness.runs.suite_run import RunError
from harness.suite.expand import SuiteError
from harness.targets.workload import WorkloadSpec
from harness.workloads import ENTRY_POINT_GROUP as WORKLOAD_ENTRY_POINT_GROUP
from harness.workloads import Workload, WorkloadError, register_workload
from stochgrad import datasets
from stochgrad.api import (
    MeasureError,
    Plan,
    Run,
    compare,
    compare_summary,
    load_run,
    measure,
    plan,
    problem,
    report,
    run,
)
from stochgrad.catalog import (
    catalog,
    failed_plugins,
    get_estimator,
    get_workload,
    list_distributions,
    list_estimators,
    list_objectives,
    list_workloads,
)
from stochgrad.checking import CheckError, CheckPolicy, CheckReport, CheckResult, ImplementationCheck, check
from stochgrad.models import workload_from_jax, workload_from_torch
from stochgrad.recommend import Recommendation, RecommendError, recommend
from stochgrad.training import TrainingPlan, TrainingRun, plan_training, train

__version__ = "0.2.0"

__all__ = [
    "BACKENDS",
    "DEFAULT_RANK_BY",
    "RANK_BY",
    "WORKLOAD_ENTRY_POINT_GROUP",
    "CheckError",
    "CheckPolicy",
    "CheckReport",
    "CheckResult",
    "Context",
    "Estimator",
    "ExecutorError",
    "FitCache",
    "FittedState",
    "Hyper",
    "ImplementationCheck",
    "MeasureError",
    "OutputError",
    "Plan",
    "Problem",
    "ProblemError",
    "RecommendError",
    "Recommendation",
    "RegistryError",
    "Run",
    "RunDirError",
    "RunError",
    "SuiteError",
    "TrainingPlan",
    "TrainingRun",
    "Workload",
    "WorkloadError",
    "WorkloadSpec",
    "__version__",
    "catalog",
    "check",
    "compare",
    "compare_summary",
    "datasets",
    "failed_plugins",
    "get_backend",
    "get_estimator",
    "get_workload",
    "list_distributions",
    "list_estimators",
    "list_objectives",
    "list_workloads",
    "load_run",
    "measure",
    "plan",
    "plan_training",
    "problem",
    "recommend",
    "register_estimator",
    "register_workload",
    "report",
    "run",
    "train",
    "workload_from_jax",
    "workload_from_torch",
]
