"""Training runs: a workload's encoder trained with each estimator, curves and final bounds (``stochgrad train``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from harness.runs.training_run import TrainRequest, train_suite, unit_label
from harness.suite.training import estimate_seconds, load_train_suite
from harness.training.limits import fmt_time

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
    estimated_seconds: float = 0.0  # the training limits' time model (harness.training.limits)
    confirmed: bool = False  # planned with confirm=True (over the limits on purpose)

    def lines(self) -> list[str]:
        """One line per unit (what ``stochgrad train --dry-run`` prints)."""
        return [unit_label(u) for u in self.units]

    def summary(self) -> str:
        """The units and the estimated training time (the last line of ``stochgrad train --dry-run``)."""
        return f"{len(self.units)} training units, estimated {fmt_time(self.estimated_seconds)} of training"


def plan_training(suite: str | Path, *, confirm: bool = False) -> TrainingPlan:
    """Validate and expand a training suite file (``[[train]]`` tables) without training anything.

    Bad input raises :class:`SuiteError` naming the file, the key and the valid choices; a suite over the training
    limits (memory of one unit, total time: ``harness.training.limits``) is refused unless ``confirm=True``
    (``stochgrad train --yes``)."""
    table, units = load_train_suite(suite, confirmed=confirm)
    return TrainingPlan(Path(suite), table, units, estimate_seconds(units), confirm)


def train(
    suite: str | Path | TrainingPlan,
    *,
    out: str | Path | None = None,
    results_dir: str | Path = "results",
    resume: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    confirm: bool = False,
    cli_args: dict[str, Any] | None = None,
    stream: TextIO | None = None,
    log: Callable[[str], Any] | None = None,
) -> TrainingRun:
    """Train every unit of a training suite (a TOML path, or a :class:`TrainingPlan`) and return the
    :class:`TrainingRun`.

    Results go to ``out`` (default ``results_dir/<suite name>-<timestamp>``), written by the one run writer (lock,
    status, atomic files; a full disk ends as a resumable ``interrupted`` run).  An existing run there is continued
    only with ``resume=True`` and the same units (finished units are kept, interrupted ones continue from their saved
    state).  ``workers=N`` trains units on a local Dask cluster of N processes, ``scheduler`` on an existing one.
    Messages go to ``stream`` (default stderr); ``log`` receives one line per finished unit (default: ``stream``).  Raises :class:`SuiteError` / :class:`RunError` on bad input,
    before anything is written.
    """
    p = suite if isinstance(suite, TrainingPlan) else plan_training(suite, confirm=confirm)
    req = TrainRequest(
        suite=p.path,
        out=out,
        results_dir=Path(results_dir),
        resume=resume,
        confirm=confirm or p.confirmed,
        workers=workers,
        scheduler=scheduler,
        cli_args=dict(cli_args or {}),
    )
    run_dir, curves, results, n = train_suite(req, stream=stream, planned=(p.suite, p.units), log=log)
    meta = json.loads((run_dir / "meta.json").read_text())
    return TrainingRun(run_dir, curves, results, meta, n)
