"""The functions of the public API: catalogs, problems, one-cell measurements, suite runs, loading and comparing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from harness import registry
from harness.problems import DISTRIBUTIONS, OBJECTIVES, Problem, ProblemSpec

__all__ = [
    "MeasureError",
    "Run",
    "compare",
    "get_estimator",
    "list_distributions",
    "list_estimators",
    "list_objectives",
    "load_run",
    "measure",
    "problem",
    "run",
]


class MeasureError(RuntimeError):
    """A measurement could not be made (the backend or device is unavailable, or the estimator failed)."""


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


def problem(
    distribution: str,
    *,
    objective: str = "quadratic",
    dim: int = 1,
    objective_params: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    **params: Any,
) -> Problem:
    """A problem: ``distribution`` with parameter values ``params`` (scalars broadcast over ``dim`` sites; lists
    give per-site values), objective f(z) with ``objective_params``.  ``problem(...).exact`` is its exact gradient.

    Example: ``problem("normal", loc=0.5, scale=1.5, objective="cos", objective_params={"omega": 2.0})``.
    Raises ``harness.problems.ProblemError`` (a ValueError) naming the key and the valid choices.
    """
    spec = ProblemSpec(distribution, objective, dim, dict(params), dict(objective_params or {}), dict(options or {}))
    return spec.build()


def measure(
    estimator: str,
    problem: Problem | ProblemSpec,
    *,
    L: int = 1,
    R: int = 10_000,
    backend: str = "numpy",
    device: str = "cpu",
    dtype: str = "float64",
    hyper: Mapping[str, Any] | None = None,
    seed: int = 0,
    timing: bool = True,
    precision: float | None = None,
) -> pd.DataFrame:
    """Measure one cell and return its tidy rows (one per parameter; columns as in results.parquet).

    R independent L-sample estimates are drawn (vectorized over R) and compared with the exact gradient:
    ``variance`` with ``variance_ci_low/high``, ``bias`` and ``bias_p``, ``mse``, ``snr``; with ``timing`` the
    per-call time and ``efficiency``.  ``precision=P`` adds replicates until every variance's 95% CI half-width
    is at most P × variance.  Raises :class:`MeasureError` when the cell cannot be measured.
    """
    from harness.cells import Cell
    from harness.runner import run_cell
    from harness.suite import validate_hyper

    spec = problem.spec if isinstance(problem, Problem) else problem
    impl = registry.get_estimator(estimator, backend)
    h = validate_hyper(impl, dict(hyper or {}), where="hyper")
    opts = {"precision": precision} if precision else {}
    cell = Cell(estimator, backend, device, spec, int(L), int(R), h, "api", int(seed), dtype, bool(timing), opts)
    out = run_cell(cell)
    if out.status != "ok":
        raise MeasureError(f"{cell.label()}: {out.status}: {out.message}")
    df = pd.DataFrame(out.rows)
    df.insert(0, "run_id", "api")
    return df


@dataclass
class Run:
    """A run directory: ``results`` (results.parquet as a DataFrame), ``meta`` (meta.json) and its path."""

    dir: Path
    results: pd.DataFrame
    meta: dict[str, Any]

    def report(self, path: str | Path | None = None, workers: int | None = 0) -> Path:
        """Write the self-contained HTML report of this run (default ``<dir>/report.html``); returns its path.

        ``workers``: processes drawing the figures (0: this process; None: every available CPU for a large
        report — they import the calling script's main module, so keep its code under ``__main__``)."""
        from harness.report import build_report

        return build_report([self.dir], Path(path) if path else self.dir / "report.html", workers=workers)

    def __repr__(self) -> str:
        return (f"Run({str(self.dir)!r}, status={self.meta.get('status')!r}, cells={self.meta.get('cells_done')}/"
                f"{self.meta.get('cells_total')}, rows={len(self.results)})")  # fmt: skip


def load_run(run_dir: str | Path) -> Run:
    """Load a finished or partial run directory."""
    from harness.store import load_run as _load

    df, meta = _load(run_dir)
    return Run(Path(run_dir), df, meta)


def run(
    suite: str | Path | Mapping[str, Any],
    *,
    out: str | Path | None = None,
    results_dir: str | Path = "results",
    backends: list[str] | None = None,
    devices: list[str] | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    precision: float | None = None,
    timing: bool = True,
    resume: bool = False,
    threads: int | None = None,
    stream: TextIO | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    cell_timeout: float | None = None,
) -> Run:
    """Run a suite (a TOML path, or the same structure as a dict) and return the :class:`Run`.

    The keyword arguments override the suite as the ``stochgrad run`` options do; results go to ``out`` (default
    ``results/<suite>-<timestamp>``).  ``workers=N`` runs the cells on a local Dask cluster of N single-threaded
    processes, ``scheduler="tcp://host:8786"`` on an existing cluster; ``cell_timeout`` (seconds) fails a cell that
    runs longer (enforced with workers).  Bad input raises the harness's input errors (``SuiteError``, ``RunError``).
    """
    from harness.execute import RunRequest, run_suite

    req = RunRequest(
        suite=suite if isinstance(suite, Mapping) else Path(suite),
        backends=backends,
        devices=devices,
        out=Path(out) if out else None,
        results_dir=Path(results_dir),
        replicates=replicates,
        seed=seed,
        dtype=dtype,
        options={"precision": precision},
        threads=threads,
        timing=timing,
        resume=resume,
        cli_args={"api": True},
        workers=workers,
        scheduler=scheduler,
        cell_timeout=cell_timeout,
    )
    return load_run(run_suite(req, stream=stream))


def compare(a: Run | str | Path, b: Run | str | Path) -> pd.DataFrame:
    """Cell-by-cell comparison of two runs: variance and time ratios (b / a) with 95% intervals and flags."""
    from harness.report.compare import compare_frames
    from harness.report.data import load_runs

    da, db = (Path(x.dir if isinstance(x, Run) else x) for x in (a, b))
    A, _ = load_runs([da])
    B, _ = load_runs([db])
    if A.empty or B.empty:
        return pd.DataFrame()
    res, _, _ = compare_frames(A, B)
    return res
