"""A training state file: the engine's arrays and the loop's meta (step, curves, fits) as one checksummed ``.npz``.

Unit states (``<run>/units/<key>.npz``) and workload checkpoints (``$STOCHGRAD_CACHE``) are both written here, through
:mod:`harness.files.cache`: atomic, with a checksum; a truncated or altered file is reported with its path, moved
aside and treated as missing, so the unit or checkpoint is trained again instead of failing every later run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.files.cache import load_npz, quarantine, save_npz

META = "__meta__"


def save_state(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    save_npz(Path(path), {**arrays, META: np.array(json.dumps(meta, default=float))})


def read_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """(arrays, meta) of a state file; None when it is missing or corrupt (a corrupt one is moved aside)."""
    got = load_npz(Path(path))
    if got is None:
        return None
    try:
        meta = json.loads(str(got.pop(META)))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except (KeyError, ValueError) as exc:
        quarantine(Path(path), f"no readable training meta ({exc})")
        return None
    return got, meta
