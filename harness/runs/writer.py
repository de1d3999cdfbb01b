"""The one writer of run directories: suite runs, training runs and ``recommend`` runs get the same guarantees.

Whatever a run measures, its directory is opened, written and closed here (:class:`RunWriter`):

* **where**: ``--out`` must not be empty (``--out "$OUT"`` with OUT unset is refused, not read as the current
  directory); a default directory is ``<results>/<name>-<timestamp>`` with a plain run name (one path component,
  checked by the suite parsers), so it stays inside the results directory; a path that exists and is not a
  directory, or a non-empty directory that holds no run of ours (no ``meta.json``), is refused;
* **one writer at a time**: an exclusive ``fcntl.flock`` on ``<run>/.lock`` for the whole run; a second run
  into the same directory is refused, and ``running`` without a held lock reads as ``interrupted``;
* **resume**: only into a run of the same kind (``meta.json`` ``kind``: ``benchmark``, ``training`` or ``recommend``), with the
  same identity (suite text and cell keys; training unit keys) and the same run options; a refused resume
  touches nothing; stale temporaries of a killed writer are removed;
* **status** in ``meta.json``: ``running`` while it runs, then ``complete`` (every item has an outcome record),
  ``interrupted`` (Ctrl-C, SIGTERM, a full disk, a lost cluster: continue with ``--resume``) or ``failed`` (the run
  itself stopped on an unexpected error; items already recorded are kept);
* **files**: every file is written atomically with normal permissions (:mod:`harness.files.atomic`); item outcome
  records (``cells/<key>.json``, ``units/<key>.json``, ``answers/<key>.json``) are written as items finish, so a resume skips them;
* **disk full** (ENOSPC, quota): the run stops with one line (:class:`RunInterrupted`, exit 2), status
  ``interrupted`` when it can still be written (else it reads as ``interrupted`` once the lock is released), and
  ``--resume`` continues it.

Errors the caller can fix are :class:`RunError` (exit 2 from the CLI), raised before anything is written.
"""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.files.atomic import atomic_write_json, is_disk_full
from harness.runs.store import LOCK_NAME, RunDirError, RunLockedError, RunStore

KINDS = ("benchmark", "training", "recommend")
STATUSES = ("running", "complete", "interrupted", "failed")
COMMANDS = {"benchmark": "stochgrad run", "training": "stochgrad train", "recommend": "stochgrad recommend"}


class RunError(ValueError):
    """Bad run request (e.g. resuming a different suite, an unusable --out); exit code 2, nothing written."""


class RunInterrupted(RunError):
    """The run stopped on an environment fault (a full disk); it is ``interrupted`` and resumable."""


def check_out(text: str | Path | None, flag: str = "--out") -> Path | None:
    """``--out`` as given: None when absent; RunError for an empty or blank value (an unset shell variable)."""
    if text is None:
        return None
    if not str(text).strip():
        raise RunError(
            f'{flag}: empty path (an unset variable in --out "$OUT"?); give a directory, '
            "or leave --out out for results/<name>-<timestamp>"
        )
    return Path(text)


def check_cache() -> None:
    """The cache directory (``$STOCHGRAD_CACHE``) up front, for runs that use it: RunError naming the variable."""
    from harness.files.cache import CacheError, check_cache_dir

    try:
        check_cache_dir()
    except CacheError as exc:
        raise RunError(str(exc)) from None


def new_run_dir(results_root: Path, name: str) -> Path:
    """``<results_root>/<name>-<timestamp>`` (``-1``, ``-2``, ... when taken); ``name`` is a checked plain name."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(results_root) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def check_resume_options(run_dir: Path, recorded: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> None:
    """RunError listing every option that differs from the run being resumed (older runs record none)."""
    if not recorded or not now:
        return
    diffs = [
        f"{k}: {recorded.get(k)} -> {now.get(k)}"
        for k in sorted(set(recorded) | set(now))
        if recorded.get(k) != now.get(k)
    ]
    if diffs:
        raise RunError(
            f"--resume: {run_dir} was run with different options; differences (run -> now): "
            + "; ".join(diffs)
            + ". Resume with the original options or start a new run"
        )


def kind_of(meta: Mapping[str, Any]) -> str:
    """The kind of run a meta.json describes (runs written before kinds were recorded are benchmark runs)."""
    return str(meta.get("kind") or "benchmark")


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so the run's status is written before the process ends."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


@dataclass
class RunPlan:
    """What a run directory will hold: its kind, what a resume must match, and the meta of a new run.

    ``identity``: meta.json fields that must be equal to resume (e.g. ``suite_text`` and ``cell_keys``);
    ``options``: run options compared key by key on resume (recorded as ``run_options``);
    ``meta``: the rest of a new run's meta.json (``run_id``, ``kind``, ``status`` are filled in);
    ``records``: the subdirectory of item outcome records (``cells`` or ``units``)."""

    kind: str
    identity: dict[str, Any]
    options: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    records: str = "cells"


class RunWriter:
    """The one writer of a run directory (see the module docstring); this process alone writes it."""

    def __init__(self, run_dir: Path, plan: RunPlan, stream: TextIO | None = None) -> None:
        if plan.kind not in KINDS:
            raise ValueError(f"unknown run kind {plan.kind!r}; valid: {list(KINDS)}")
        self.dir = Path(run_dir)
        self.plan = plan
        self.store = RunStore(self.dir, records=plan.records)
        self.stream = stream or sys.stderr
        self.meta: dict[str, Any] = {}

    # -- opening ---------------------------------------------------------------------------------------------
    def _refuse_foreign(self) -> None:
        """Refuse a path that is not a directory, or a non-empty directory without a run of ours."""
        try:
            if self.dir.is_symlink() and not self.dir.exists():
                raise RunError(f"--out {self.dir}: a dangling or looping symbolic link")
            if self.dir.exists() and not self.dir.is_dir():
                raise RunError(f"--out {self.dir}: exists and is not a directory")
            if not self.dir.is_dir() or self.store.exists():
                return
            foreign = sorted(p.name for p in self.dir.iterdir() if p.name != LOCK_NAME)
        except OSError as exc:
            raise RunError(f"--out {self.dir}: cannot use it: {exc.strerror or exc}") from None
        if foreign:
            raise RunError(
                f"--out {self.dir}: the directory is not empty and holds no stochgrad run (no meta.json; found "
                f"{', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); choose a new or empty directory"
            )

    def _lock(self) -> None:
        try:
            self.store.acquire_lock()
        except RunLockedError as exc:
            raise RunError(f"{exc}; wait for it to finish or choose another --out") from None
        except OSError as exc:
            raise RunError(f"--out {self.dir}: cannot create the run directory: {exc.strerror or exc}") from None

    def _check_resumable(self, meta: Mapping[str, Any]) -> None:
        kind, want = kind_of(meta), self.plan.kind
        if kind != want:
            raise RunError(
                f"--resume: {self.dir} is a {kind} run (written by `{COMMANDS.get(kind, kind)}`), not a {want} "
                f"run; `{COMMANDS[want]} --resume` continues only {want} runs"
            )
        diffs = [k for k, v in self.plan.identity.items() if meta.get(k) != v]
        if diffs:
            raise RunError(
                f"--resume: {self.dir} was started from a different suite or options ({', '.join(diffs)} differ); "
                "start a new run or pass the same suite and flags"
            )
        check_resume_options(self.dir, meta.get("run_options"), self.plan.options)

    def open(self, resume: bool) -> dict[str, Any]:
        """Check, lock and mark the run ``running``; returns its meta (read on resume, new otherwise)."""
        self._refuse_foreign()
        if resume:
            if not self.store.exists():
                raise RunError(f"--resume: {self.dir} holds no run to resume (no meta.json)")
            try:
                self._check_resumable(self.store.read_meta())
            except RunDirError as exc:
                raise RunError(f"--resume: {exc}") from None
            self._lock()
            try:
                meta = self.store.read_meta()  # as of now, under the lock
                self._check_resumable(meta)
            except (RunDirError, RunError):
                self.store.release_lock()
                raise
            if meta.get("status") == "running":
                self.stream.write(f"note: {self.dir} was killed while running (status was 'running'); resuming it\n")
            for p in self.store.clean_stale_tmp():
                self.stream.write(f"note: removed stale temporary file {p}\n")
            meta["run_options"] = meta.get("run_options") or self.plan.options
        else:
            if self.store.exists():
                raise RunError(f"{self.dir} already holds a run; use --resume to continue it or choose another --out")
            self._lock()
            if self.store.exists():  # another run created it between the check and the lock
                self.store.release_lock()
                raise RunError(f"{self.dir} already holds a run; use --resume to continue it or choose another --out")
            meta = {
                "run_id": self.dir.name,
                "kind": self.plan.kind,
                **self.plan.meta,
                **self.plan.identity,
                "run_options": self.plan.options,
                "started": dt.datetime.now(dt.timezone.utc).isoformat(),
                "finished": None,
            }
        meta["status"] = "running"
        self.meta = meta
        try:
            self.write_meta()
        except OSError as exc:
            self.store.release_lock()
            if is_disk_full(exc):
                raise RunInterrupted(f"{self.dir}: disk full while writing meta.json ({exc.strerror})") from None
            raise RunError(f"--out {self.dir}: cannot write meta.json: {exc.strerror or exc}") from None
        return meta

    # -- writing ---------------------------------------------------------------------------------------------
    def write_meta(self) -> None:
        self.store.write_meta(self.meta)

    def save_record(self, key: str, record: Mapping[str, Any]) -> None:
        """An item's outcome (``<records>/<key>.json``), the moment it finishes."""
        atomic_write_json(self.store.records_dir / f"{key}.json", dict(record))

    def records(self) -> dict[str, dict[str, Any]]:
        return self.store.finished()

    # -- running and closing ---------------------------------------------------------------------------------
    @contextmanager
    def running(
        self, finish: Callable[[], bool], interrupts: tuple[type[BaseException], ...] = ()
    ) -> Iterator[RunWriter]:
        """The body of the run.  On the way out — normally or not — ``finish()`` writes the run's tables and
        returns whether every item has an outcome; then the status is written and the lock released.

        SIGTERM is an interrupt here; Ctrl-C and SIGTERM leave ``interrupted`` and are re-raised; a full disk
        leaves ``interrupted`` and raises :class:`RunInterrupted` (one line); errors of the ``interrupts`` types
        (e.g. a lost cluster) leave ``interrupted`` and are re-raised; any other error leaves ``failed``."""
        main_thread = threading.current_thread() is threading.main_thread()
        old_term = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
        error: BaseException | None = None
        try:
            yield self
        except BaseException as exc:
            error = exc
        try:
            error = self._close(finish, error, interrupts)
        finally:
            self.store.release_lock()
            if main_thread:
                signal.signal(signal.SIGTERM, old_term)
        if error is not None:
            if is_disk_full(error):
                raise RunInterrupted(self._disk_full_line(error)) from None
            raise error

    def _disk_full_line(self, exc: BaseException) -> str:
        where = next((getattr(e, "filename", None) for e in _chain(exc) if getattr(e, "filename", None)), None)
        what = f" while writing {where}" if where else ""
        return (
            f"disk full{what} (No space left on device); {self.dir} is interrupted: free some space and continue "
            f"with `{COMMANDS[self.plan.kind]} ... --resume --out {self.dir}`"
        )

    def _close(
        self, finish: Callable[[], bool], error: BaseException | None, interrupts: tuple[type[BaseException], ...]
    ) -> BaseException | None:
        """Write the tables and the final status; returns the error that ends the run (None: it ended normally)."""
        complete = False
        try:
            complete = finish()
        except BaseException as exc:  # e.g. the disk is still full: the status below still says what happened
            if error is None:
                error = exc
            elif not is_disk_full(exc):
                self.stream.write(f"note: {self.dir}: could not write the run's tables: {exc}\n")
        if error is None:
            status = "complete" if complete else "interrupted"
        elif isinstance(error, (KeyboardInterrupt, *interrupts)) or is_disk_full(error):
            status = "interrupted"
        else:
            status = "failed"
            self.meta["error"] = f"{type(error).__name__}: {error}"
        self.meta["status"] = status
        self.meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat() if status == "complete" else None
        try:
            self.write_meta()
        except OSError as exc:  # the lock is released next: a 'running' meta then reads as interrupted
            if not is_disk_full(exc):  # a full disk is said once, by the caller's one line
                self.stream.write(f"note: {self.dir}: could not record status {status!r} ({exc.strerror or exc})\n")
        return error


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while exc is not None and seen < 8:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
