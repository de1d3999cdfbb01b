"""Figures drawn in worker processes while the report's tables are built, consumed in submission order.

Drawing is most of a report's time (matplotlib: layout, rendering, PNG encoding) and every figure is independent,
so :class:`FigurePipeline` hands each figure job (a module-level function and its picklable arguments: small data
frames, a palette) to a process pool and gives the results back in the order they were submitted.  Consuming in
order keeps what depends on earlier figures exact: a job whose ``wanted()`` is false when its turn comes (the
report's figure budget is spent) is skipped — cancelled if it has not started, its result discarded otherwise —
and at most ``window`` jobs are in flight.  With ``workers <= 1`` every job runs in this process when its turn
comes: same results, same order.

Workers come from a ``forkserver`` (``spawn`` where there is none) that has imported the plotting modules once,
so a worker starts in milliseconds and never inherits the parent's threads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

PRELOAD = ["harness.report.plots", "harness.report.sections"]
MIN_PARALLEL_JOBS = 8  # fewer figure jobs than this: starting the workers costs more than it saves


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(n_jobs: int) -> int:
    """Worker processes for ``n_jobs`` figure jobs: every available CPU, none for a small report."""
    return 0 if n_jobs < MIN_PARALLEL_JOBS else min(available_cpus(), n_jobs)


class FigurePipeline:
    """Submit figure jobs; ``on_done(result, skipped)`` runs for each, in submission order (see module docstring)."""

    def __init__(self, workers: int, window: int = 0) -> None:
        self.workers = workers
        self.window = window or 4 * max(workers, 1)
        self._pool: ProcessPoolExecutor | None = None
        self._queue: deque[tuple[Future | Callable[[], Any] | None, Callable[[Any, bool], None], Callable[[], bool]]]
        self._queue = deque()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if ctx.get_start_method() == "forkserver":
                ctx.set_forkserver_preload(PRELOAD)
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        return self._pool

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any, bool], None],
        wanted: Callable[[], bool] = lambda: True,
    ) -> None:
        if not wanted():
            job: Future | Callable[[], Any] | None = None
        elif self.workers > 1:
            job = self._executor().submit(fn, *args)
        else:
            job = lambda: fn(*args)  # noqa: E731 - run when its turn comes (after the earlier jobs' budget)
        self._queue.append((job, on_done, wanted))
        while len(self._queue) > self.window:
            self._next()

    def _next(self) -> None:
        job, on_done, wanted = self._queue.popleft()
        if job is None or not wanted():
            if isinstance(job, Future):
                job.cancel()
            on_done(None, True)
        elif isinstance(job, Future):
            on_done(job.result(), False)
        else:
            on_done(job(), False)

    def drain(self) -> None:
        """Consume every pending job, then stop the workers."""
        try:
            while self._queue:
                self._next()
        finally:
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> FigurePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
