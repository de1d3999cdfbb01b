"""Output files written from run directories (report and compare pages): checked first, written whole or not at all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class OutputError(ValueError):
    """An output file that cannot be written (a directory, under a file, a read-only place); nothing was written."""


def check_output_file(path: str | Path) -> Path:
    """An output file path: not a directory, in a directory that exists or can be created (else OutputError)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path / 'report.html'}")
    above = next((p for p in path.parents if p.exists()), Path("."))
    if not above.is_dir():
        raise OutputError(f"{path}: {above} is not a directory")
    return path


@contextlib.contextmanager
def writing(path: str | Path | None) -> Iterator[None]:
    """Around writing ``path``: an OSError becomes an OutputError naming the file, and the page's temporary
    (``.NAME.tmp``, as the report writer names it) is removed."""
    try:
        yield
    except OSError as exc:
        if path is not None:
            with contextlib.suppress(OSError):  # a read-only place cannot even be cleaned: nothing was written
                Path(path).with_name(f".{Path(path).name}.tmp").unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
