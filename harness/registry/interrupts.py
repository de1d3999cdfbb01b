"""What a ``KeyboardInterrupt`` means while an estimator runs: the user's Ctrl-C, or the estimator's own.

A plugin (or a library it calls) may raise ``KeyboardInterrupt`` or ``SystemExit`` itself.  That is its call's
failure, not the user stopping the run: the cell (``stochgrad run``), the training unit (``stochgrad train``) or the
race arm (``stochgrad recommend``) fails with the reason and the others go on.  A real Ctrl-C, or SIGTERM (which the
run writer turns into a ``KeyboardInterrupt`` subclass), still stops everything.  :func:`as_failure` tells them apart.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

OWN_INTERRUPT = "KeyboardInterrupt (no Ctrl-C was pressed)"


class EstimatorExit(RuntimeError):
    """An estimator ended its own call with ``SystemExit``, or ``KeyboardInterrupt`` without a Ctrl-C: its failure,
    as an ordinary exception (the cell, unit or race arm fails with the message; the run goes on)."""


@contextlib.contextmanager
def as_failure() -> Iterator[None]:
    """Turn an estimator's own ``SystemExit`` or ``KeyboardInterrupt`` raised inside the block into
    :class:`EstimatorExit`.  A real Ctrl-C during the block (recorded by a SIGINT handler installed for it; main
    thread only, elsewhere every ``KeyboardInterrupt`` is trusted) and SIGTERM (a subclass) pass unchanged."""
    seen = {"sigint": threading.current_thread() is not threading.main_thread()}
    previous = None
    if not seen["sigint"]:
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            seen["sigint"] = True
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt

        try:
            signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the interpreter's main thread after all
            seen["sigint"], previous = True, None
    try:
        yield
    except SystemExit as exc:
        raise EstimatorExit(f"the estimator raised SystemExit({exc.code!r})") from None
    except KeyboardInterrupt as exc:
        if type(exc) is not KeyboardInterrupt or seen["sigint"]:
            raise
        raise EstimatorExit(f"the estimator raised {OWN_INTERRUPT}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
