"""Execute an expanded suite into a run directory (fresh or resumed), with progress and metadata."""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from harness import registry
from harness.cells import Cell
from harness.envinfo import git_commit, machine_info
from harness.runner import CellOutcome, run_cell
from harness.store import RunStore
from harness.suite import Expansion


class RunError(ValueError):
    """Bad run request (e.g. resuming a different suite); exit code 2."""


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """cells done/total with ETA on stderr; a carriage-return bar on a TTY, periodic lines otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.stream, self.done, self.t0 = total, stream, 0, time.perf_counter()
        self.tty = stream.isatty()
        self.last = 0.0

    def update(self, outcome: CellOutcome) -> None:
        self.done += 1
        el = time.perf_counter() - self.t0
        eta = el / self.done * (self.total - self.done)
        pct = 100 * self.done / max(self.total, 1)
        width = 24
        bar = "#" * int(width * self.done / max(self.total, 1))
        msg = f"[{bar:<{width}}] {self.done}/{self.total} {pct:5.1f}% elapsed {_fmt_s(el)} ETA {_fmt_s(eta)}"
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


def execute(
    expansion: Expansion,
    suite_path: str | Path,
    run_dir: Path,
    *,
    resume: bool = False,
    cli_args: dict[str, Any] | None = None,
    stream: TextIO = sys.stderr,
    runner: Callable[[Cell], CellOutcome] = run_cell,
) -> Path:
    """Run every cell not yet finished in ``run_dir``; returns the run directory."""
    store = RunStore(run_dir)
    suite_text = Path(suite_path).read_text()
    keys = [c.key() for c in expansion.cells]
    if resume:
        if not store.exists():
            raise RunError(f"--resume: {run_dir} holds no run to resume (no meta.json)")
        meta = store.read_meta()
        if meta.get("suite_text") != suite_text or meta.get("cell_keys") != keys:
            raise RunError(
                f"--resume: {run_dir} was started from a different suite or options; "
                "start a new run or pass the same suite and flags"
            )
    else:
        if store.exists():
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
            "cells_total": len(keys),
            "cell_keys": keys,
            "dropped": dict(expansion.dropped),
            "failed_plugins": registry.failed_plugins(),
            "estimators": [s.summary() for s in registry.list_estimators()],  # the catalog as it was
            "machine": machine_info(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(),
            "finished": None,
            "status": "running",
        }
        store.write_meta(meta)
    done = store.finished()
    todo = [c for c in expansion.cells if c.key() not in done]
    if resume:
        stream.write(f"resuming {run_dir}: {len(done)} cells done, {len(todo)} to go\n")
    progress = Progress(len(todo), stream)
    last_ckpt = time.perf_counter()
    try:
        for cell in todo:
            outcome = runner(cell)
            store.save_cell(outcome)
            progress.update(outcome)
            if time.perf_counter() - last_ckpt > 30:
                store.write_results(meta["run_id"])
                last_ckpt = time.perf_counter()
    finally:
        progress.close()
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
    return run_dir
