"""CLI input checks on paths: output files that can be written, run directories that can be read."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class UsageError(ValueError):
    """Bad command-line input; the CLI prints ``error: ...`` and exits with 2."""


def check_output_file(flag: str, path: Path) -> None:
    """An output file path: not a directory, in an existing directory."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give a file name such as {path / 'report.html'}")
    above = next((p for p in path.parents if p.exists()), Path("."))
    if not above.is_dir():
        raise UsageError(f"{flag} {path}: {above} is not a directory")


@contextlib.contextmanager
def writing(flag: str, path: Path | None) -> Iterator[None]:
    """An output file that cannot be written is bad input (exit 2); its temporary is removed."""
    try:
        yield
    except OSError as exc:
        if path is not None:
            Path(path).with_name(f".{Path(path).name}.tmp").unlink(missing_ok=True)
        raise UsageError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None


def readable_run(run: Path) -> None:
    from harness.runs.store import load_run

    try:
        load_run(run)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
