"""The command line's own input error: bad arguments that the public API cannot see (flags, their combinations)."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad command-line input; the CLI prints ``error: ...`` and exits with 2."""
