"""Training runs: a workload's encoder trained with each estimator, curves and final bounds (``stochgrad train``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["TrainingPlan", "TrainingRun", "plan_training", "train"]


@dataclass
class TrainingRun:
    """A training run directory: ``curves`` (curves.parquet: one row per unit × logged step), ``results``
    (results.parquet: one summary row per finished unit), ``meta`` (meta.json) and ``units_total``."""

    dir: Path
    curves: pd.DataFrame
    results: pd.DataFrame
    meta: dict[str, Any]
    units_total: int

    @property
    def units_done(self) -> int:
        """Units finished (their summary rows)."""
        return len(self.results)

    @property
    def complete(self) -> bool:
        """Every unit finished."""
        return self.units_done == self.units_total

    def report(self, path: str | Path | None = None) -> Path:
        """Write the HTML report of this training run (default ``<dir>/report.html``); returns its path."""
        from stochgrad.api import report

        return report([self.dir], path)

    def __repr__(self) -> str:
        return f"TrainingRun({str(self.dir)!r}, units={self.units_done}/{self.units_total})"


@dataclass
class TrainingPlan:
    """A validated training suite: ``suite`` (its ``[suite]`` table) and ``units``, one dict per training run
    (workload, config, estimator, hyper, seed, lr, backend, device, steps, ...).  Made by :func:`plan_training`."""

    path: Path
    suite: dict[str, Any]
    units: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per unit (what ``stochgrad train --dry-run`` prints)."""
        return [
            f"{u['workload']} {u['estimator']} seed={u['seed']} lr={u['lr']} {u['backend']}:{u['device']}"
            for u in self.units
        ]


def plan_training(suite: str | Path) -> TrainingPlan:
    """Validate and expand a training suite file (``[[train]]`` tables) without training anything.

    Bad input raises :class:`SuiteError` naming the file, the key and the valid choices."""
    from harness.suite.training import load_train_suite

    table, units = load_train_suite(suite)
    return TrainingPlan(Path(suite), table, units)


def train(
    suite: str | Path | TrainingPlan,
    *,
    out: str | Path | None = None,
    results_dir: str | Path = "results",
    resume: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    log: Any = print,
) -> TrainingRun:
    """Train every unit of a training suite (a TOML path, or a :class:`TrainingPlan`) and return the
    :class:`TrainingRun`.

    Results go to ``out`` (default ``results_dir/<suite name>-<timestamp>``); an existing run there is continued only
    with ``resume=True`` (finished units are kept, interrupted ones continue from their saved state).  ``workers=N``
    trains units on a local Dask cluster of N processes, ``scheduler`` on an existing one.  ``log`` receives one line
    per finished unit.  Raises :class:`SuiteError` / :class:`RunError` on bad input, before anything is written.
    """
    from harness.runs.training_run import executor_runner

    from harness.runs.executors import ExecutorError, make_executor, registering_modules
    from harness.runs.suite_run import RunError
    from harness.runs.training_run import run_training

    p = suite if isinstance(suite, TrainingPlan) else plan_training(suite)
    name = p.suite.get("name", p.path.stem)
    run_dir = Path(out) if out is not None else Path(results_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / "meta.json").exists() and not resume:
        raise RunError(f"{run_dir}: a run directory already exists; continue it with --resume")
    try:
        kw = {"preload": registering_modules(), "exclusive_timing": False} if workers else {}
        ex = make_executor(workers, scheduler, **kw)
    except ExecutorError as exc:
        raise RunError(f"--scheduler/--workers: {exc}") from None
    with ex:
        curves, results = run_training(p.suite, p.units, run_dir, resume=resume, runner=executor_runner(ex), log=log)
    meta = json.loads((run_dir / "meta.json").read_text())
    return TrainingRun(run_dir, curves, results, meta, len(p.units))
