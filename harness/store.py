"""Results store: ``<run>/results.parquet`` + ``meta.json`` (+ ``cells/`` for resume), written atomically.

Every file is written to a temporary name in the same directory, fsync'ed and renamed over the target
(``os.replace``), so an interrupted run never leaves a truncated file.  Each finished cell is saved as
``cells/<key>.json`` the moment it ends; ``--resume`` reads those and skips the cells already done;
``results.parquet`` is rebuilt from them at checkpoints and at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import COLUMN_ORDER, SORT_KEYS, CellOutcome


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """One run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.cells_dir = self.dir / "cells"

    @property
    def results_path(self) -> Path:
        return self.dir / "results.parquet"

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def read_meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text())

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
        """Saved cell records by key (unreadable files, e.g. from a foreign tool, are ignored)."""
        out = {}
        if self.cells_dir.exists():
            for p in sorted(self.cells_dir.glob("*.json")):
                try:
                    rec = json.loads(p.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
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


def load_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(results, meta) of a finished or partial run; raises FileNotFoundError naming what is missing."""
    store = RunStore(run_dir)
    if not store.meta_path.exists():
        raise FileNotFoundError(f"{run_dir}: not a stochgrad run directory (no meta.json)")
    meta = store.read_meta()
    df = pd.read_parquet(store.results_path) if store.results_path.exists() else pd.DataFrame(store.rows())
    return df, meta
