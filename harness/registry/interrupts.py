"""What a ``KeyboardInterrupt`` means while an estimator runs: the user's Ctrl-C, or the estimator's own.

A plugin (or a library it calls) may raise ``KeyboardInterrupt`` itself.  That is its call's failure, not the user
stopping the run: the cell (``stochgrad run``) or the training unit (``stochgrad train``) fails with the reason and
the others go on.  A real Ctrl-C, or SIGTERM (which the run writer turns into a ``KeyboardInterrupt`` subclass),
still stops everything.  :func:`sigint_seen` records which it was; :func:`estimator_raised` decides.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

OWN_INTERRUPT = "KeyboardInterrupt (no Ctrl-C was pressed)"


@contextlib.contextmanager
def sigint_seen() -> Iterator[dict[str, bool]]:
    """Records whether a real SIGINT (Ctrl-C) arrived, so that a ``KeyboardInterrupt`` an estimator raises itself
    can be told apart from the user's.  Main thread only: elsewhere every ``KeyboardInterrupt`` is trusted."""
    seen = {"sigint": threading.current_thread() is not threading.main_thread()}
    if seen["sigint"]:
        yield seen
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        seen["sigint"] = True
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the interpreter's main thread after all
        seen["sigint"] = True
        yield seen
        return
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def estimator_raised(exc: BaseException, seen: dict[str, bool]) -> bool:
    """True when ``exc`` is a plain ``KeyboardInterrupt`` raised without a Ctrl-C (the estimator's own); False for
    the user's Ctrl-C and for SIGTERM (a subclass), which must stop the run."""
    return type(exc) is KeyboardInterrupt and not seen["sigint"]


class EstimatorExit(RuntimeError):
    """An estimator ended its own call with ``SystemExit``, or ``KeyboardInterrupt`` without a Ctrl-C: its failure,
    as an ordinary exception (the cell, unit or race arm fails with the message; the run goes on)."""


@contextlib.contextmanager
def as_failure(seen: dict[str, bool]) -> Iterator[None]:
    """Turn an estimator's own ``SystemExit`` or ``KeyboardInterrupt`` (no Ctrl-C, per ``seen`` from
    :func:`sigint_seen`) raised inside the block into :class:`EstimatorExit`; a real Ctrl-C or SIGTERM passes."""
    try:
        yield
    except SystemExit as exc:
        raise EstimatorExit(f"the estimator raised SystemExit({exc.code!r})") from None
    except KeyboardInterrupt as exc:
        if not estimator_raised(exc, seen):
            raise
        raise EstimatorExit(f"the estimator raised {OWN_INTERRUPT}") from None
