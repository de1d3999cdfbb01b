"""The on-disk cache (``$STOCHGRAD_CACHE``): checked up front, self-checking ``.npz`` files that heal.

Checkpoints, workload truths and training-unit states are ``.npz`` files written atomically
(:mod:`harness.files.atomic`) with a SHA-256 of their arrays stored inside (member ``__sha256__``: names, dtypes,
shapes and bytes of every other member, in name order).  :func:`load_npz` recomputes it: a truncated, empty,
garbage or altered file is reported on stderr with its path and the reason, moved aside to ``<name>.corrupt``
(kept for inspection; a later one replaces it) and treated as missing, so the caller rebuilds it.  One bad file
therefore costs one rebuild, never every later run.

:func:`check_cache_dir` runs before any work that uses the cache: the directory must exist or be creatable and be
writable; otherwise :class:`CacheError` names the variable and the reason (a file, ``/dev/null``, ``/proc/...``, a
read-only directory), and the command exits 2 before writing anything.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from harness.files.atomic import atomic_write_bytes

ENV = "STOCHGRAD_CACHE"
CHECKSUM = "__sha256__"
CORRUPT_SUFFIX = ".corrupt"


class CacheError(ValueError):
    """The cache directory cannot be used; the message names ``$STOCHGRAD_CACHE`` (exit 2)."""


def cache_dir() -> Path:
    """``$STOCHGRAD_CACHE``, or ``~/.cache/stochgrad/checkpoints`` when it is unset or empty."""
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "stochgrad" / "checkpoints")


def check_cache_dir() -> Path:
    """The cache directory, created if needed; CacheError naming the variable if it is not a writable directory."""
    raw = os.environ.get(ENV)
    path = cache_dir()
    what = f"{ENV}={raw}" if raw else f"the cache directory {path} ({ENV} is not set)"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CacheError(f"{what}: exists and is not a directory; set {ENV} to a writable directory") from None
    except OSError as exc:
        raise CacheError(
            f"{what}: cannot create it ({exc.strerror or exc}); set {ENV} to a writable directory"
        ) from None
    if not path.is_dir():
        raise CacheError(f"{what}: not a directory; set {ENV} to a writable directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CacheError(f"{what}: not writable ({exc.strerror or exc}); set {ENV} to a writable directory") from None
    return path


def digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the members' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The ``.npz`` content of ``arrays`` with its checksum member added."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if CHECKSUM in arrays:
        raise ValueError(f"{CHECKSUM} is reserved for the checksum")
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{CHECKSUM: np.array(digest(arrays))})
    return buf.getvalue()


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically with their checksum (see the module docstring)."""
    atomic_write_bytes(Path(path), npz_bytes(arrays))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a checksummed ``.npz`` file; ValueError saying what is wrong when it does not verify."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(arrays, dict) or CHECKSUM not in arrays:
        raise ValueError("no checksum (not written by this version of stochgrad)")
    want = str(arrays.pop(CHECKSUM))
    if digest(arrays) != want:
        raise ValueError("checksum mismatch (the file was altered or partly written)")
    return arrays


def quarantine(path: Path, why: str) -> Path:
    """Move a corrupt cache file aside (``<name>.corrupt``), report it on stderr, and return the new path."""
    path = Path(path)
    aside = path.with_name(path.name + CORRUPT_SUFFIX)
    try:
        os.replace(path, aside)
        where = f"moved to {aside}"
    except FileNotFoundError:  # another process moved it first
        where = "already moved aside"
    except OSError as exc:
        try:
            path.unlink()
            where = f"deleted (could not move it: {exc.strerror or exc})"
        except OSError:
            where = f"left in place (could not move it: {exc.strerror or exc})"
    sys.stderr.write(f"note: {path}: corrupt cache file, {why}; {where}; it will be rebuilt\n")
    return aside


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The verified arrays of ``path``; None when it is missing or corrupt (then moved aside and reported)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read_npz(path)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        quarantine(path, str(exc))
        return None
