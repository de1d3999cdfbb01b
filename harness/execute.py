"""Execute an expanded suite into a run directory (fresh or resumed), with progress and metadata."""

from __future__ import annotations

import datetime as dt
import json
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from harness import registry
from harness.cells import Cell
from harness.envinfo import git_commit, machine_info
from harness.executors import Executor, InProcessExecutor
from harness.results import CellOutcome
from harness.runner import run_cell
from harness.store import RunDirError, RunLockedError, RunStore
from harness.suite import Expansion


class RunError(ValueError):
    """Bad run request (e.g. resuming a different suite); exit code 2."""


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class CostModel:
    """Expected seconds of a cell, learned as the run goes: the median of finished cells of the same estimator,
    backend and size L·D; else of the same estimator and backend; else of the backend; else of all cells."""

    def __init__(self) -> None:
        self.seen: dict[tuple, list[float]] = {}

    @staticmethod
    def groups(cell: Cell) -> list[tuple]:
        size = cell.n_samples * int(getattr(cell.problem, "dim", 1) or 1)
        return [(cell.estimator, cell.backend, size), (cell.estimator, cell.backend), (cell.backend,), ()]

    def observe(self, cell: Cell, seconds: float) -> None:
        for g in self.groups(cell):
            self.seen.setdefault(g, []).append(seconds)

    def expected(self, cell: Cell) -> float | None:
        for g in self.groups(cell):
            if g in self.seen:
                return statistics.median(self.seen[g])
        return None


def _round_robin(queues: list[list[Any]]) -> list[Any]:
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def interleave(cells: list[Cell]) -> list[Cell]:
    """Cells round-robin over backends, and within a backend over estimators (each estimator's cells in suite
    order): the cost model sees every backend and many estimators in the first cells (a JAX cell, which
    compiles, costs ~40 NumPy cells), and costly groups spread over the run and the workers."""
    by_backend: dict[str, dict[str, list[Cell]]] = {}
    for c in cells:
        by_backend.setdefault(c.backend, {}).setdefault(c.estimator, []).append(c)
    return _round_robin([_round_robin(list(ests.values())) for ests in by_backend.values()])


class Progress:
    """cells done/total with ETA on stderr; a carriage-return bar on a TTY, periodic lines otherwise.

    The ETA is the remaining cells' expected cost (:class:`CostModel`) divided by the cells that run at once
    (``slots``, the workers); ``eta_check`` records, at 10% of the cells, this ETA and the old equal-cost one
    (elapsed / done × remaining), and at the end the real remaining time (meta.json).
    """

    def __init__(self, cells: list[Cell], stream: TextIO | None = None, slots: int = 1) -> None:
        stream = stream or sys.stderr
        self.total, self.stream, self.done, self.t0 = len(cells), stream, 0, time.perf_counter()
        self.remaining = {c.key(): c for c in cells}
        self.slots, self.model = max(1, slots), CostModel()
        self.tty = stream.isatty()
        self.last = 0.0
        self.eta_check: dict[str, Any] = {}

    def eta(self) -> float | None:
        costs = [self.model.expected(c) for c in self.remaining.values()]
        if not costs or any(c is None for c in costs):
            return None if costs else 0.0
        return sum(costs) / min(self.slots, len(costs))  # type: ignore[arg-type]

    def update(self, outcome: CellOutcome) -> None:
        self.done += 1
        self.remaining.pop(outcome.cell.key(), None)
        if outcome.status == "ok":
            self.model.observe(outcome.cell, outcome.seconds)
        el = time.perf_counter() - self.t0
        eta = self.eta()
        if not self.eta_check and self.done >= 0.1 * self.total and self.done < self.total:
            self.eta_check = {"at_cells": self.done, "of_cells": self.total, "elapsed_s": el, "eta_model_s": eta,
                              "eta_equal_cost_s": el / self.done * (self.total - self.done)}  # fmt: skip
        if self.done == self.total and self.eta_check:
            self.eta_check["real_remaining_s"] = el - self.eta_check["elapsed_s"]
        pct = 100 * self.done / max(self.total, 1)
        width = 24
        bar = "#" * int(width * self.done / max(self.total, 1))
        eta_s = "?" if eta is None else _fmt_s(eta)
        msg = f"[{bar:<{width}}] {self.done}/{self.total} {pct:5.1f}% elapsed {_fmt_s(el)} ETA {eta_s}"
        if outcome.status != "ok":
            self.stream.write(
                ("\n" if self.tty else "") + f"  {outcome.status}: {outcome.cell.label()}: {outcome.message}\n"
            )
        if self.tty:
            self.stream.write("\r" + msg[:160])
        elif time.perf_counter() - self.last > 5 or self.done == self.total:
            self.stream.write(msg + "\n")
            self.last = time.perf_counter()
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def new_run_dir(results_root: Path, suite_name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = results_root / f"{suite_name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


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
    out: Path | None = None
    results_dir: Path = Path("results")
    replicates: int | None = None
    seed: int | None = None
    dtype: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # precision, max_replicates, max_seconds, max_memory, ...
    threads: int | None = None
    timing: bool = True
    resume: bool = False
    confirm: bool = False  # --yes: run a suite over the size limits (harness.suite_limits)
    cli_args: dict[str, Any] = field(default_factory=dict)
    workers: int | None = None  # a LocalCluster of this many worker processes (else the suite's `workers`)
    scheduler: str | None = None  # an existing Dask scheduler (else the suite's `scheduler`)
    cell_timeout: float | None = None  # seconds per cell, enforced with workers (else the suite's `cell_timeout`)

    @property
    def suite_label(self) -> str:
        return "<dict>" if isinstance(self.suite, Mapping) else str(self.suite)


def plan(req: RunRequest) -> Expansion:
    """Validate and expand the request's suite (SuiteError on bad input; nothing is written)."""
    from harness.backends import BACKEND_NAMES
    from harness.suite import expand

    bad = [b for b in req.backends or [] if b not in BACKEND_NAMES]
    if bad:
        raise RunError(f"--backend: unknown backend {bad[0]!r}; valid: {list(BACKEND_NAMES)}")
    if req.resume and not req.out:
        raise RunError("--resume needs --out RUN_DIR (the run to continue)")
    data = req.suite if isinstance(req.suite, Mapping) else None
    exp = expand(req.suite_label if data is not None else req.suite, data, backends=req.backends,
                 devices=req.devices, replicates=req.replicates, seed=req.seed, dtype=req.dtype,
                 options=req.options, confirmed=req.confirm)  # fmt: skip
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
    from harness.executors import ExecutorError, make_executor, registering_modules

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
    from harness.timing import available_cpus, pin_threads

    pin_threads(req.threads)  # before any backend runs: XLA reads the affinity mask when it starts
    exp = exp or plan(req)
    if not exp.cells:
        raise RunError(f"{req.suite_label}: the suite expands to no cells (see the drop reasons above)")
    for note in unavailable_notes(exp.cells):
        stream.write(note + "\n")
    run_dir = Path(req.out) if req.out else new_run_dir(Path(req.results_dir), exp.suite["name"])
    timeout = req.cell_timeout if req.cell_timeout is not None else exp.suite.get("cell_timeout")
    local = req.workers or (None if req.scheduler else exp.suite.get("workers"))
    if local and local > available_cpus() and any(c.timing for c in exp.cells):
        stream.write(f"note: {local} workers on {available_cpus()} CPUs: per-call times are inflated by time-sharing "
                     "(docs/notes/scale-out.md); use at most one worker per CPU for timing\n")  # fmt: skip
    with executor_for(req, exp) as executor:
        return execute(exp, req.suite, run_dir, resume=req.resume, cli_args=req.cli_args, stream=stream,
                       executor=executor, cell_timeout=timeout, run_opts=run_options(exp.cells, req.threads))  # fmt: skip


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


def check_resume_options(run_dir: Path, recorded: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> None:
    """RunError listing every option that differs from the run being resumed (older runs record none)."""
    if not recorded or not now:
        return
    diffs = [f"{k}: {recorded.get(k)} -> {now.get(k)}" for k in sorted(set(recorded) | set(now))
             if recorded.get(k) != now.get(k)]  # fmt: skip
    if diffs:
        raise RunError(f"--resume: {run_dir} was run with different options; differences (run -> now): "
                       + "; ".join(diffs) + ". Resume with the original options or start a new run")  # fmt: skip


def _lock(store: RunStore) -> None:
    try:
        store.acquire_lock()
    except RunLockedError as exc:
        raise RunError(f"{exc}; wait for it to finish or choose another --out") from None
    except OSError as exc:
        raise RunError(f"--out {store.dir}: cannot create the run directory: {exc.strerror or exc}") from None


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so the run's status is written before the process ends."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


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
    store = RunStore(run_dir)
    suite_text = suite_text_of(suite)
    suite_path = "<dict>" if isinstance(suite, Mapping) else suite
    keys = [c.key() for c in expansion.cells]
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir}: exists and is not a directory")
    if resume:
        if not store.exists():
            raise RunError(f"--resume: {run_dir} holds no run to resume (no meta.json)")
        try:
            meta = store.read_meta()
        except RunDirError as exc:
            raise RunError(f"--resume: {exc}") from None
        if meta.get("suite_text") != suite_text or meta.get("cell_keys") != keys:
            raise RunError(
                f"--resume: {run_dir} was started from a different suite or options; "
                "start a new run or pass the same suite and flags"
            )
        check_resume_options(run_dir, meta.get("run_options"), run_opts)
        _lock(store)
        meta = store.read_meta()  # as of now, under the lock
        if meta.get("status") == "running":
            stream.write(f"note: {run_dir} was killed while running (status was 'running'); resuming it\n")
        for p in store.clean_stale_tmp():
            stream.write(f"note: removed stale temporary file {p}\n")
        meta["status"] = "running"
        meta["run_options"] = meta.get("run_options") or run_opts
        store.write_meta(meta)
    else:
        if store.exists():
            raise RunError(f"{run_dir} already holds a run; use --resume to continue it or choose another --out")
        _lock(store)
        if store.exists():  # another run created it between the check and the lock
            store.release_lock()
            raise RunError(f"{run_dir} already holds a run; use --resume to continue it or choose another --out")
        registry.ensure_loaded()
        meta = {
            "run_id": run_dir.name,
            "suite": expansion.suite.get("name"),
            "suite_path": str(suite_path),
            "suite_text": suite_text,
            "git_commit": git_commit(Path(__file__).parent),
            "seed": expansion.suite.get("seed"),
            "cli_args": cli_args or {},
            "run_options": run_opts,
            "cells_total": len(keys),
            "cell_keys": keys,
            "dropped": dict(expansion.dropped),
            "failed_plugins": registry.failed_plugins(),
            "estimators": [e.summary() for e in registry.declarations()],  # the catalog as it was
            "machine": machine_info(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(),
            "finished": None,
            "status": "running",
        }
    meta["cluster"] = executor.describe()
    meta.setdefault("cluster_history", []).append(meta["cluster"])
    store.write_meta(meta)
    done = store.finished()
    todo = interleave([c for c in expansion.cells if c.key() not in done])
    if resume:
        stream.write(f"resuming {run_dir}: {len(done)} cells done, {len(todo)} to go\n")
    progress = Progress(todo, stream, executor.slots)
    if cell_timeout and not executor.enforces_timeout:
        stream.write(f"note: cell_timeout {cell_timeout:g} s is not enforced in-process; run with --workers N\n")
    last_ckpt = time.perf_counter()
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    results = executor.map_unordered(runner, todo, key=Cell.key, resources=cell_resources, timeout=cell_timeout)
    seen: set[str] = set()
    try:
        for res in results:
            if res.item.key() in seen:  # never twice (a task retried after its worker died reports once)
                continue
            seen.add(res.item.key())
            outcome = res.value if res.ok else CellOutcome(
                res.item, "skipped" if res.kind == "unavailable" else "failed", message=res.error)  # fmt: skip
            store.save_cell(outcome)
            progress.update(outcome)
            if time.perf_counter() - last_ckpt > 30:
                store.write_results(meta["run_id"])
                last_ckpt = time.perf_counter()
    finally:
        results.close()  # cancels what is still queued on a cluster
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
        complete = len(records) >= len(keys)
        meta["status"] = "complete" if complete else "interrupted"
        meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat() if complete else None
        meta["seeds"] = {
            "suite_seed": meta.get("seed"),
            "derivation": "cell seed = sha256(suite seed, cell key) (harness.cells.Cell.cell_seed)",
        }
        store.write_results(meta["run_id"])
        store.write_meta(meta)
        store.release_lock()
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)
    return run_dir
