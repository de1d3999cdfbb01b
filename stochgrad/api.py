"""Measuring: problems, one-cell measurements, suite plans and runs, loading, comparing and reporting runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from harness import registry
from harness.problems import Problem, ProblemSpec
from harness.results.ranking import check_rank_by

__all__ = [
    "MeasureError",
    "Plan",
    "Run",
    "compare",
    "compare_summary",
    "load_run",
    "measure",
    "plan",
    "problem",
    "report",
    "run",
]


class MeasureError(RuntimeError):
    """A measurement could not be made (the backend or device is unavailable, or the estimator failed)."""


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
    Raises :class:`ProblemError` (a ValueError) naming the key and the valid choices.
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
    from harness.measure.cells import Cell
    from harness.measure.runner import run_cell
    from harness.suite.expand import validate_hyper

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

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The cells that failed, ``[{"cell": label, "error": message}, ...]`` (meta.json's ``failed``)."""
        return list(self.meta.get("failed", []))

    @property
    def complete(self) -> bool:
        """Every cell measured or skipped (status ``complete``), none failed."""
        return self.meta.get("status") == "complete" and not self.failed

    def report(self, path: str | Path | None = None, workers: int | None = 0, rank_by: str | None = None) -> Path:
        """Write the self-contained HTML report of this run (default ``<dir>/report.html``); returns its path.

        ``workers``: processes drawing the figures (0: this process; None: every available CPU for a large
        report — they import the calling script's main module, so keep its code under ``__main__``).  ``rank_by``:
        "time" | "evals" | "samples" (see :func:`report`; None: the suite's, else "time")."""
        return report([self.dir], path, workers=workers, rank_by=rank_by)

    def header(self) -> str:
        """One line about the run: id, kind, suite, commit, status, cells (or training units) done."""
        from harness.runs.store import run_header

        return run_header(self.meta)

    def __repr__(self) -> str:
        return (
            f"Run({str(self.dir)!r}, status={self.meta.get('status')!r}, cells={self.meta.get('cells_done')}/"
            f"{self.meta.get('cells_total')}, rows={len(self.results)})"
        )


def load_run(run_dir: str | Path) -> Run:
    """Load a finished or partial run directory (``FileNotFoundError`` / :class:`RunDirError` when it is missing
    or unreadable)."""
    from harness.runs.store import load_run as _load

    df, meta = _load(run_dir)
    return Run(Path(run_dir), df, meta)


@dataclass
class Plan:
    """A validated, expanded suite: what :func:`run` would measure, before anything is written.

    ``cells`` are the expanded cells, ``summary()`` the text ``stochgrad run`` prints (counts and drop reasons);
    ``run()`` executes the plan into a run directory.  Made by :func:`plan`."""

    request: Any  # harness.runs.suite_run.RunRequest
    expansion: Any  # harness.suite.expand.Expansion
    cells: list[Any] = field(default_factory=list)

    def summary(self) -> str:
        """Cell count and why combinations were dropped (estimators that do not apply, exclusions)."""
        return str(self.expansion.summary())

    def run(self, stream: TextIO | None = None) -> Run:
        """Execute the plan (progress to ``stream``, default stderr) and return the :class:`Run`.

        Raises :class:`ExecutorError` when the cluster goes away mid-run (the finished cells are saved)."""
        from harness.runs.suite_run import run_suite

        return load_run(run_suite(self.request, stream=stream, exp=self.expansion))


def plan(
    suite: str | Path | Mapping[str, Any],
    *,
    out: str | Path | None = None,
    results_dir: str | Path = "results",
    backends: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    precision: float | None = None,
    max_replicates: int | None = None,
    max_seconds: float | None = None,
    max_memory: float | None = None,
    compile_backend: str | None = None,
    timing: bool = True,
    resume: bool = False,
    confirm: bool = False,
    threads: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    cell_timeout: float | None = None,
    cli_args: Mapping[str, Any] | None = None,
) -> Plan:
    """Validate and expand a suite (a TOML path, or the same structure as a dict) without running anything.

    The keywords override the suite as the ``stochgrad run`` options do: ``backends``/``devices`` keep or replace
    the suite's, ``replicates``, ``seed``, ``dtype``; ``precision=P`` adds replicates until every variance's 95% CI
    half-width is at most P × variance (0 forces a fixed R), capped by ``max_replicates`` and ``max_seconds`` per
    cell; ``max_memory`` (MiB) bounds one vectorized chunk; ``compile_backend`` wraps torch estimators in
    ``torch.compile``; ``confirm=True`` accepts a suite over the size limits; ``threads`` pins every backend's
    thread count.  Results go to ``out`` (default ``results_dir/<suite>-<timestamp>``; ``resume=True`` continues the
    run in ``out``).  ``workers=N`` runs the cells on a local Dask cluster of N single-threaded processes,
    ``scheduler="tcp://host:8786"`` on an existing cluster; ``cell_timeout`` (seconds) fails a cell that runs longer
    (enforced with workers).  ``cli_args`` is recorded in meta.json (default ``{"api": True}``).

    Bad input raises :class:`SuiteError` or :class:`RunError` naming the file, key and valid choices.
    """
    from harness.runs.suite_run import RunRequest
    from harness.runs.suite_run import plan as expand_request

    options = {
        "precision": precision,
        "max_replicates": max_replicates,
        "max_seconds": max_seconds,
        "max_memory": max_memory,
        "compile_backend": compile_backend,
    }
    req = RunRequest(
        suite=suite if isinstance(suite, Mapping) else Path(suite),
        backends=None if backends is None else list(backends),
        devices=None if devices is None else list(devices),
        out=Path(out) if out is not None else None,
        results_dir=Path(results_dir),
        replicates=replicates,
        seed=seed,
        dtype=dtype,
        options=options,  # None: not given (the suite's value or the default)
        threads=threads,
        timing=timing,
        resume=resume,
        confirm=confirm,
        cli_args=dict(cli_args) if cli_args is not None else {"api": True},
        workers=workers,
        scheduler=scheduler,
        cell_timeout=cell_timeout,
    )
    exp = expand_request(req)
    return Plan(req, exp, list(exp.cells))


def run(suite: str | Path | Mapping[str, Any], *, stream: TextIO | None = None, **options: Any) -> Run:
    """Run a suite (a TOML path, or the same structure as a dict) and return the :class:`Run`.

    ``options`` are those of :func:`plan` (``out``, ``backends``, ``replicates``, ``seed``, ``precision``,
    ``resume``, ``workers``, ``scheduler``, ``cell_timeout``, ...); progress goes to ``stream`` (default stderr).
    Scripts that pass ``workers`` must guard their entry point with ``if __name__ == "__main__":`` (Dask starts
    worker processes that import the script).  Bad input raises :class:`SuiteError` or :class:`RunError`.
    """
    return plan(suite, **options).run(stream=stream)


def _run_dir(x: Run | str | Path) -> Path:
    return Path(x.dir if isinstance(x, Run) else x)


def compare(a: Run | str | Path, b: Run | str | Path) -> pd.DataFrame:
    """Cell-by-cell comparison of two runs: variance and time ratios (b / a) with 95% intervals and flags."""
    from harness.report.compare import compare_frames
    from harness.report.data import load_runs

    da, db = _run_dir(a), _run_dir(b)
    A, _ = load_runs([da])
    B, _ = load_runs([db])
    if A.empty or B.empty:
        return pd.DataFrame()
    res, _, _ = compare_frames(A, B)
    return res


def compare_summary(
    a: Run | str | Path, b: Run | str | Path, path: str | Path | None = None
) -> tuple[str, Path | None]:
    """What ``stochgrad compare A B [-o PATH]`` shows: the terminal summary and table of the comparison, and with
    ``path`` the HTML page written there (returned as the second item).

    Both runs are read before anything is written (``FileNotFoundError`` / :class:`RunDirError`); an output path
    that cannot be written raises :class:`OutputError` and leaves nothing behind."""
    from harness.report.compare import compare_runs
    from harness.runs.output import check_output_file, writing

    da, db = _run_dir(a), _run_dir(b)
    for d in (da, db):
        load_run(d)
    out = None if path is None else check_output_file(path)
    with writing(out):
        return compare_runs(da, db, out)


def report(
    runs: Run | str | Path | Sequence[Run | str | Path],
    path: str | Path | None = None,
    workers: int | None = 0,
    rank_by: str | None = None,
) -> Path:
    """Write one self-contained HTML report of one or more run directories (suite runs, or training runs) and
    return its path (default ``<first run>/report.html``).  ``workers``: processes drawing the figures (0: this
    process; None: every available CPU for a large report — they import the calling script's main module, so keep
    its code under ``if __name__ == "__main__":``).  ``rank_by``: what every "best" is measured by — "time" (equal
    time on the device measured: variance × time per call), "evals" (equal evaluations: variance × evaluations per
    estimate) or "samples" (variance at equal L, labelled so); None: the suite's ``[suite] rank_by`` as the first run
    recorded it, else "time".  An unknown value raises ``ValueError`` naming the valid choices, before anything is
    read or written.

    Every run is read before anything is written (``FileNotFoundError`` / :class:`RunDirError`); an output path
    that cannot be written raises :class:`OutputError` and leaves nothing behind."""
    from harness.report import build_report
    from harness.runs.output import check_output_file, writing

    if rank_by is not None:
        check_rank_by(rank_by)
    dirs = [_run_dir(r) for r in ([runs] if isinstance(runs, Run | str | Path) else runs)]
    if not dirs:
        raise ValueError("report: give at least one run directory")
    for d in dirs:
        load_run(d)
    out = check_output_file(path if path is not None else dirs[0] / "report.html")
    with writing(out):
        return build_report(dirs, out, workers=workers, rank_by=rank_by)
