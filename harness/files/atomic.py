"""Atomic file writes with normal permissions: a temporary file in the same directory, fsync, rename.

Every file stochgrad writes (run directories, cache files, training states) goes through :func:`atomic_write`, so
an interrupted writer never leaves a truncated file under the final name, and files get the usual permissions
(0666 minus the umask: 0644 under umask 022), not mkstemp's 0600.  A failed write (disk full, read-only file
system) removes its temporary and raises the ``OSError`` unchanged; :func:`is_disk_full` recognises the ones that
mean "no space left" so that callers can stop a run as ``interrupted`` (resumable) instead of failing items.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def file_mode() -> int:
    """0666 minus the process umask (what ``open(..., "w")`` would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _open_tmp(path: Path) -> tuple[IO[bytes], str]:
    """A new temporary file next to ``path`` (its name starts with a dot and ends with TMP_SUFFIX), opened for
    binary writing with :func:`file_mode` permissions."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        return os.fdopen(fd, "wb"), tmp
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, fill: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` atomically: ``fill(fh)`` writes the content into a temporary file, which is flushed,
    fsync'ed and renamed over ``path``.  On any failure the temporary is removed and the error re-raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh, tmp = _open_tmp(path)
    try:
        with fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:  # name the file the caller was writing
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_parquet(path: Path, df: Any) -> None:
    """A pandas DataFrame as parquet (no index)."""
    atomic_write(path, lambda fh: df.to_parquet(fh, index=False))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk or quota is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False
