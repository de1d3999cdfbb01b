"""Run directory files: ``<run>/results.parquet`` + ``meta.json`` (+ ``cells/`` or ``units/`` for resume), the lock.

:class:`RunStore` reads and writes the files of one run directory; :mod:`harness.runs.writer` is the one writer that
opens, resumes and closes a run through it (suite runs and training runs alike); the report reads through
:func:`load_run`.

Every file is written through :mod:`harness.files.atomic` (a temporary name in the same directory, fsync'ed and
renamed over the target), so an interrupted run never leaves a truncated file.  Each finished cell is saved as
``cells/<key>.json`` the moment it ends; ``--resume`` reads those and skips the cells already done;
``results.parquet`` is rebuilt from them at checkpoints and at the end.

Files get the usual permissions (0666 minus the umask: 0644 under umask 022), not mkstemp's 0600.  A run holds
an exclusive ``fcntl.flock`` on ``<run>/.lock`` while it writes, so a second run into the same directory fails
clearly; a ``running`` status without a held lock means the run was killed (shown as ``interrupted``).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from harness.files.atomic import TMP_SUFFIX, atomic_write_json, atomic_write_parquet, file_mode
from harness.results import COLUMN_ORDER, SORT_KEYS, CellOutcome

LOCK_NAME = ".lock"
__all__ = ["LOCK_NAME", "RunDirError", "RunLockedError", "RunStore", "atomic_write_json", "atomic_write_parquet"]


class RunDirError(ValueError):
    """A run directory that cannot be read (missing, truncated or garbage meta.json / results.parquet)."""


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock."""


class RunStore:
    """One run directory."""

    def __init__(self, run_dir: str | Path, records: str = "cells") -> None:
        self.dir = Path(run_dir)
        self.records_dir = self.dir / records  # one outcome record per finished item (cells/ or units/)

    @property
    def cells_dir(self) -> Path:
        return self.records_dir

    @property
    def results_path(self) -> Path:
        return self.dir / "results.parquet"

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def read_meta(self) -> dict[str, Any]:
        """meta.json as a dict; RunDirError naming the file when it is missing or not a JSON object."""
        try:
            meta = json.loads(self.meta_path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise RunDirError(f"{self.meta_path}: not a stochgrad run directory (no meta.json)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{self.meta_path}: meta.json: unreadable or corrupt ({exc})") from None
        if not isinstance(meta, dict):
            raise RunDirError(f"{self.meta_path}: meta.json: must hold a JSON object, got {type(meta).__name__}")
        return meta

    # -- lock, stale temporaries, status --------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.dir / LOCK_NAME

    def acquire_lock(self) -> int:
        """Take the run directory's exclusive lock (held until :meth:`release_lock` or process exit)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"{self.dir}: another run holds this directory's lock ({LOCK_NAME})") from None
        self._lock_fd = fd
        return fd

    def release_lock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._lock_fd = None

    def lock_held(self) -> bool:
        """Whether some process (this one included) holds the lock now."""
        if getattr(self, "_lock_fd", None) is not None:
            return True
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def clean_stale_tmp(self) -> list[Path]:
        """Remove temporaries left by a killed writer (call with the lock held); returns what was removed."""
        removed = []
        for d in (self.dir, self.records_dir):
            if d.is_dir():
                for p in d.glob(f".*{TMP_SUFFIX}"):
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

    def effective_status(self, meta: dict[str, Any]) -> str:
        """meta's status, with ``running`` read as ``interrupted`` when no process holds the lock."""
        status = str(meta.get("status"))
        return "interrupted" if status == "running" and not self.lock_held() else status

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.meta_path, meta)

    def save_cell(self, outcome: CellOutcome) -> None:
        atomic_write_json(
            self.cells_dir / f"{outcome.cell.key()}.json",
            {
                "key": outcome.cell.key(),
                "status": outcome.status,
                "message": outcome.message,
                "seconds": outcome.seconds,
                "label": outcome.cell.label(),
                "cell": outcome.cell.to_dict(),
                "rows": outcome.rows,
            },
        )

    def finished(self) -> dict[str, dict[str, Any]]:
        """Saved outcome records by key (unreadable files and JSON that is not a record of ours — e.g. from a
        foreign tool — are ignored, so those items run again)."""
        out = {}
        if self.records_dir.is_dir():
            for p in sorted(self.records_dir.glob("*.json")):
                try:
                    rec = json.loads(p.read_text())
                except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if isinstance(rec, dict) and rec.get("key") == p.stem and isinstance(rec.get("status"), str):
                    out[rec["key"]] = rec
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [r for rec in self.finished().values() if rec["status"] == "ok" for r in rec["rows"]]

    def write_results(self, run_id: str) -> pd.DataFrame:
        df = pd.DataFrame(self.rows())
        if not df.empty:
            df.insert(0, "run_id", run_id)
            first = [c for c in COLUMN_ORDER if c in df.columns]
            df = df[first + [c for c in df.columns if c not in first]]
            df = df.sort_values([k for k in SORT_KEYS if k in df.columns], kind="stable")
        atomic_write_parquet(self.results_path, df)
        return df


def run_header(meta: dict[str, Any]) -> str:
    """One line about a run: id, kind, suite, commit, status and items done (cells or training units)."""
    if meta.get("kind") == "training":
        done = f"units {meta.get('units_done')}/{meta.get('units_total')}"
    elif meta.get("kind") == "recommend":
        done = f"answers {meta.get('answers_done')}/{meta.get('answers_total')}"
    else:
        done = f"cells {meta.get('cells_done')}/{meta.get('cells_total')}"
    kind = f"  kind {meta['kind']}" if meta.get("kind") else ""
    return (
        f"run {meta.get('run_id')}{kind}  suite {meta.get('suite')}  commit {meta.get('git_commit')}  "
        f"status {meta.get('status')}  {done}"
    )


def load_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(results, meta) of a finished or partial run; raises FileNotFoundError naming what is missing."""
    store = RunStore(run_dir)
    if not store.meta_path.exists():
        raise FileNotFoundError(f"{run_dir}: not a stochgrad run directory (no meta.json)")
    meta = store.read_meta()
    meta["status"] = store.effective_status(meta)
    done_key = "units_done" if meta.get("kind") == "training" else "cells_done"
    if meta.get(done_key) is None:  # written when a run ends: while it runs, or after a kill, count the records
        records = RunStore(run_dir, "units" if done_key == "units_done" else "cells").finished()
        meta[done_key] = sum(1 for rec in records.values() if rec["status"] == "ok")
    if not store.results_path.exists():
        return pd.DataFrame(store.rows()), meta
    try:
        df = pd.read_parquet(store.results_path)
    except Exception as exc:  # pyarrow raises several types (ArrowInvalid, OSError) for a corrupt file
        raise RunDirError(f"{store.results_path}: results.parquet: unreadable or corrupt ({exc})") from None
    return df, meta
