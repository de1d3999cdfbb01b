"""Execute an expanded suite into a run directory (fresh or resumed), with progress and metadata."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from harness import registry
from harness.measure.cells import Cell
from harness.measure.runner import run_cell
from harness.results import CellOutcome
from harness.runs.executors import Executor, InProcessExecutor
from harness.runs.machine import git_commit, machine_info
from harness.runs.progress import Progress, interleave
from harness.runs.writer import (
    RunError,
    RunPlan,
    RunWriter,
    check_cache,
    check_out,
    check_resume_options,
    new_run_dir,
)
from harness.suite.expand import Expansion
from harness.targets.workload import WorkloadSpec

__all__ = ["RunError", "RunRequest", "check_resume_options", "execute", "new_run_dir", "plan", "run_suite"]


def suite_text_of(suite: str | Path | Mapping[str, Any]) -> str:
    """The suite's text as recorded in meta.json (a dict suite is recorded as JSON)."""
    if isinstance(suite, Mapping):
        return json.dumps(suite, sort_keys=True, default=str)
    return Path(suite).read_text()


@dataclass
class RunRequest:
    """A suite run: the suite (a TOML path or a dict), overrides of its keys, and where results go."""

    suite: str | Path | Mapping[str, Any]
    backends: list[str] | None = None
    devices: list[str] | None = None
    out: str | Path | None = None  # "" is refused (an unset variable in --out "$OUT")
    results_dir: Path = Path("results")
    replicates: int | None = None
    seed: int | None = None
    dtype: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # precision, max_replicates, max_seconds, max_memory, ...
    threads: int | None = None
    timing: bool = True
    resume: bool = False
    confirm: bool = False  # --yes: run a suite over the size limits (harness.suite.limits)
    cli_args: dict[str, Any] = field(default_factory=dict)
    workers: int | None = None  # a LocalCluster of this many worker processes (else the suite's `workers`)
    scheduler: str | None = None  # an existing Dask scheduler (else the suite's `scheduler`)
    cell_timeout: float | None = None  # seconds per cell, enforced with workers (else the suite's `cell_timeout`)

    @property
    def suite_label(self) -> str:
        return "<dict>" if isinstance(self.suite, Mapping) else str(self.suite)


def plan(req: RunRequest) -> Expansion:
    """Validate and expand the request's suite (SuiteError on bad input; nothing is written)."""
    from harness.backends import BACKEND_NAMES, get_backend
    from harness.suite.expand import expand

    bad = [b for b in req.backends or [] if b not in BACKEND_NAMES]
    if bad:
        raise RunError(f"--backend: unknown backend {bad[0]!r}; valid: {list(BACKEND_NAMES)}")
    if req.resume and req.out is None:
        raise RunError("--resume needs --out RUN_DIR (the run to continue)")
    cb = req.options.get("compile_backend")
    if cb is not None:
        why = get_backend("torch").compile_backend_error(str(cb))
        if why:
            raise RunError(f"--torch-compile: {why}")
    check_out(req.out)
    data = req.suite if isinstance(req.suite, Mapping) else None
    exp = expand(
        req.suite_label if data is not None else req.suite,
        data,
        backends=req.backends,
        devices=req.devices,
        replicates=req.replicates,
        seed=req.seed,
        dtype=req.dtype,
        options=req.options,
        confirmed=req.confirm,
    )
    if not req.timing:
        exp.cells = [replace(c, timing=False) for c in exp.cells]
    return exp


def unavailable_notes(cells: list[Cell]) -> list[str]:
    """One note per (backend, device) that cannot run here, with the number of cells it skips."""
    from collections import Counter

    from harness.backends import get_backend

    notes: Counter = Counter()
    for c in cells:
        reason = get_backend(c.backend).device_error(c.device)
        if reason:
            notes[f"{c.backend}:{c.device}: {reason}"] += 1
    return [f"note: {n} cells will be skipped — {why}" for why, n in notes.items()]


def executor_for(req: RunRequest, exp: Expansion) -> Executor:
    """The executor of a run: request options first, then the suite's ``workers`` / ``scheduler`` keys."""
    from harness.runs.executors import ExecutorError, make_executor, registering_modules

    if req.workers is not None and req.scheduler is not None:
        raise RunError("--workers starts a local cluster and --scheduler connects to one: give only one")
    if req.workers is not None and (
        isinstance(req.workers, bool) or not isinstance(req.workers, int) or req.workers < 1
    ):
        raise RunError(f"--workers: expected a positive integer, got {req.workers!r}")
    workers, scheduler = req.workers, req.scheduler
    if workers is None and scheduler is None:
        workers, scheduler = exp.suite.get("workers"), exp.suite.get("scheduler")
    gpu = any(c.device != "cpu" for c in exp.cells)
    kw: dict[str, Any] = {"exclusive_timing": bool(exp.suite.get("exclusive_timing", True))}
    if scheduler is None:
        kw.update(gpu_workers=int(gpu), preload=registering_modules())
    try:
        return make_executor(workers, scheduler, **kw)
    except ExecutorError as exc:
        raise RunError(f"--scheduler/--workers: {exc}") from None


def run_suite(req: RunRequest, stream: TextIO | None = None, exp: Expansion | None = None) -> Path:
    """Plan and execute a suite run (threads pinned first); returns the run directory."""
    stream = stream or sys.stderr
    from harness.measure.timing import available_cpus, pin_threads

    pin_threads(req.threads)  # before any backend runs: XLA reads the affinity mask when it starts
    exp = exp or plan(req)
    if not exp.cells:
        raise RunError(f"{req.suite_label}: the suite expands to no cells (see the drop reasons above)")
    if any(isinstance(c.target, WorkloadSpec) for c in exp.cells):  # workload cells read and write the cache
        check_cache()
    for note in unavailable_notes(exp.cells):
        stream.write(note + "\n")
    out = check_out(req.out)
    run_dir = out if out is not None else new_run_dir(Path(req.results_dir), exp.suite["name"])
    timeout = req.cell_timeout if req.cell_timeout is not None else exp.suite.get("cell_timeout")
    local = req.workers or (None if req.scheduler else exp.suite.get("workers"))
    if local and local > available_cpus() and any(c.timing for c in exp.cells):
        stream.write(
            f"note: {local} workers on {available_cpus()} CPUs: per-call times are inflated by time-sharing "
            "(docs/notes/scale-out.md); use at most one worker per CPU for timing\n"
        )
    with executor_for(req, exp) as executor:
        return execute(
            exp,
            req.suite,
            run_dir,
            resume=req.resume,
            cli_args=req.cli_args,
            stream=stream,
            executor=executor,
            cell_timeout=timeout,
            run_opts=run_options(exp.cells, req.threads),
        )


def cell_resources(cell: Cell) -> dict[str, float] | None:
    """Worker resources a cell needs: one GPU for cuda/gpu cells (two cells never share a GPU)."""
    return None if cell.device == "cpu" else {"GPU": 1}


def run_options(cells: list[Cell], threads: int | None = None) -> dict[str, Any]:
    """What a run's cells are measured with beyond their keys (seed, R, dtype, timing, runner options, threads);
    recorded in meta.json so that ``--resume`` with different options is refused."""

    def values(f: Callable[[Cell], Any]) -> list[Any]:
        return sorted({json.dumps(f(c), sort_keys=True, default=str) for c in cells})

    return {
        "seed": values(lambda c: c.seed),
        "replicates": values(lambda c: c.n_replicates),
        "dtype": values(lambda c: c.dtype),
        "timing": values(lambda c: c.timing),
        "options": values(lambda c: c.options),
        "threads": threads,
    }


def execute(
    expansion: Expansion,
    suite: str | Path | Mapping[str, Any],
    run_dir: Path,
    *,
    resume: bool = False,
    cli_args: dict[str, Any] | None = None,
    stream: TextIO | None = None,
    runner: Callable[[Cell], CellOutcome] = run_cell,
    executor: Executor | None = None,
    cell_timeout: float | None = None,
    run_opts: dict[str, Any] | None = None,
) -> Path:
    """Run every cell not yet finished in ``run_dir`` on ``executor`` (default: in this process); this process
    alone writes the run directory, under its lock, each cell as it completes.  Returns the run directory."""
    stream = stream or sys.stderr
    executor = executor or InProcessExecutor()
    suite_text = suite_text_of(suite)
    suite_path = "<dict>" if isinstance(suite, Mapping) else suite
    keys = [c.key() for c in expansion.cells]
    registry.ensure_loaded()
    writer = RunWriter(
        run_dir,
        RunPlan(
            kind="benchmark",
            identity={"suite_text": suite_text, "cell_keys": keys},
            options=run_opts,
            meta={
                "suite": expansion.suite.get("name"),
                "suite_path": str(suite_path),
                "git_commit": git_commit(Path(__file__).parent),
                "seed": expansion.suite.get("seed"),
                "rank_by": expansion.suite.get("rank_by"),  # the report's ranking (None: the default)
                "cli_args": cli_args or {},
                "cells_total": len(keys),
                "dropped": dict(expansion.dropped),
                "failed_plugins": registry.failed_plugins(),
                "estimators": [e.summary() for e in registry.declarations()],  # the catalog as it was
                "machine": machine_info(),
            },
            records="cells",
        ),
        stream,
    )
    meta = writer.open(resume)
    store = writer.store
    meta["cluster"] = executor.describe()
    meta.setdefault("cluster_history", []).append(meta["cluster"])
    done = store.finished()
    todo = interleave([c for c in expansion.cells if c.key() not in done])
    if resume:
        stream.write(f"resuming {run_dir}: {len(done)} cells done, {len(todo)} to go\n")
    progress = Progress(todo, stream, executor.slots)
    if cell_timeout and not executor.enforces_timeout:
        stream.write(f"note: cell_timeout {cell_timeout:g} s is not enforced in-process; run with --workers N\n")

    def finish() -> bool:
        progress.close()
        if progress.eta_check:
            meta["eta_check"] = progress.eta_check
        records = store.finished()
        meta["skipped"] = [
            {"cell": r["label"], "reason": r["message"]} for r in records.values() if r["status"] == "skipped"
        ]
        meta["failed"] = [
            {"cell": r["label"], "error": r["message"]} for r in records.values() if r["status"] == "failed"
        ]
        meta["cells_done"] = sum(1 for r in records.values() if r["status"] == "ok")
        meta["seeds"] = {
            "suite_seed": meta.get("seed"),
            "derivation": "cell seed = sha256(suite seed, cell key) (harness.measure.cells.Cell.cell_seed)",
        }
        store.write_results(meta["run_id"])
        return len(records) >= len(keys)

    from harness.runs.executors import ExecutorError

    last_ckpt = time.perf_counter()
    with writer.running(finish, interrupts=(ExecutorError,)):
        writer.write_meta()  # the cluster of this session
        results = executor.map_unordered(runner, todo, key=Cell.key, resources=cell_resources, timeout=cell_timeout)
        seen: set[str] = set()
        try:
            for res in results:
                if res.item.key() in seen:  # never twice (a task retried after its worker died reports once)
                    continue
                seen.add(res.item.key())
                outcome = (
                    res.value
                    if res.ok
                    else CellOutcome(res.item, "skipped" if res.kind == "unavailable" else "failed", message=res.error)
                )
                store.save_cell(outcome)
                progress.update(outcome)
                if time.perf_counter() - last_ckpt > 30:
                    store.write_results(meta["run_id"])
                    last_ckpt = time.perf_counter()
        finally:
            results.close()  # cancels what is still queued on a cluster
    return run_dir
