"""Where cells (and other units) run: in this process, or as tasks on a Dask cluster; results return to the client.

One small interface, :meth:`Executor.map_unordered`: apply a picklable module-level function to JSON-able items
and yield a :class:`TaskResult` per item as each completes.  The client alone consumes the results (and writes the
run directory); the executor never touches files.

- :class:`InProcessExecutor` — the default: items run one after the other in this process.
- :class:`DaskExecutor` — ``dask.distributed``: a ``LocalCluster`` of ``workers`` single-threaded worker processes,
  or an existing scheduler at ``scheduler``.  Dask reschedules the tasks of a worker that dies; a task whose
  workers die ``allowed_failures + 1`` times (segfault, OOM, kill -9) comes back as a failed result with the
  reason.  With ``timeout`` the client watches each task from the moment a worker starts it (an event the task
  logs) and, past the limit, cancels it and kills that worker process (its nanny starts a fresh one).  Items asking for a
  resource no worker offers (``GPU``) come back failed with the command that starts such a worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from harness import registry
from harness.measure import runner
from harness.measure.timing import THREAD_ENV, pin_threads, thread_settings

TOPIC = "stochgrad-task-start"
TIMING_LOCK = "stochgrad-timing"


class ExecutorError(RuntimeError):
    """The executor cannot start or lost its cluster (bad address, unreachable scheduler, bad option)."""


@dataclass
class TaskResult:
    """One item's outcome: ``value`` when ``error`` is empty, else why it failed (exception, killed workers, limit)."""

    item: Any
    value: Any = None
    error: str = ""
    kind: str = ""  # "" | "exception" | "killed" | "timeout" | "unavailable"

    @property
    def ok(self) -> bool:
        return not self.error


Resources = Callable[[Any], dict[str, float] | None]


class Executor:
    """Runs ``fn(item)`` for many items; ``slots`` is how many run at once (for the ETA)."""

    slots: int = 1
    enforces_timeout: bool = False

    def map_unordered(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        key: Callable[[Any], str] = str,
        resources: Resources | None = None,
        timeout: float | None = None,
    ) -> Iterator[TaskResult]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The cluster as recorded in meta.json: kind, workers, threads per worker, resources, hosts."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Items run one after the other in this process (``timeout`` cannot be enforced here and is ignored)."""

    def map_unordered(self, fn, items, *, key=str, resources=None, timeout=None) -> Iterator[TaskResult]:  # noqa: ANN001
        for item in items:
            try:
                yield TaskResult(item, fn(item))
            except Exception as exc:  # a unit's own error; the run goes on
                yield TaskResult(item, error=f"{type(exc).__name__}: {exc}", kind="exception")

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "in-process",
            "workers": 1,
            "threads_per_worker": {"main": thread_settings()["threads"]},
            "resources": {},
            "hosts": [socket.gethostname()],
            "pids": [os.getpid()],
        }


# -- the worker side --------------------------------------------------------------------------------------
_WORKER_READY: dict[str, Any] = {}


def _worker_setup(exclusive_timing: bool) -> None:
    """Pin threads to the worker's thread count (once per process); hold timing phases under the cluster-wide
    lock or not, as this run asks (set for every task: several runs may share workers)."""
    from distributed import Lock, get_worker

    if not _WORKER_READY.get("pinned"):
        pin_threads(get_worker().state.nthreads)
        _WORKER_READY["pinned"] = True
    runner.set_timing_guard((lambda: Lock(TIMING_LOCK)) if exclusive_timing else contextlib.nullcontext)


def _remote(item: Any, *, run: Callable[[Any], Any], exclusive: bool) -> Any:
    """The task: announce the start (the client's time limit counts from here), then ``run(item)``."""
    from distributed import get_worker

    _worker_setup(exclusive)
    w = get_worker()
    w.log_event(TOPIC, {"key": str(w.get_current_task()), "worker": w.address, "pid": os.getpid()})
    return run(item)


async def _die() -> None:  # a coroutine: client.run(..., wait=False) runs it in the worker's event loop
    os.kill(os.getpid(), signal.SIGKILL)


# -- the client side --------------------------------------------------------------------------------------
def worker_env(threads: int = 1) -> dict[str, str]:
    """Environment of local worker processes: every thread pool at ``threads`` (XLA's too) before imports."""
    env = {v: str(threads) for v in THREAD_ENV}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return env


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while local workers start, so that they inherit the disposition: a Ctrl-C in the terminal
    reaches every process of the foreground group, and only this process should answer it (with one line; it then
    closes the cluster) instead of each worker printing its own KeyboardInterrupt traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class DaskExecutor(Executor):
    """Tasks on a Dask cluster: a new ``LocalCluster`` of ``workers`` processes, or the scheduler at ``scheduler``.

    ``gpu_workers`` local workers (at most one by default) offer the resource ``GPU=1``; ``allowed_failures``
    bounds the worker deaths a task may cause (local clusters only; an existing scheduler keeps its own
    ``distributed.scheduler.allowed-failures``).  ``exclusive_timing`` holds the timing phases of cells under one
    ``distributed.Lock`` (docs/notes/scale-out.md).  ``preload``: modules every local worker imports at start
    (e.g. estimators registered outside the ``stochgrad.estimators`` entry points).
    """

    enforces_timeout = True

    def __init__(
        self,
        workers: int | None = None,
        scheduler: str | None = None,
        *,
        connect_timeout: float = 10.0,
        allowed_failures: int = 2,
        gpu_workers: int = 0,
        exclusive_timing: bool = True,
        preload: Iterable[str] = (),
        dashboard: bool = False,
    ) -> None:
        if (workers is None) == (scheduler is None):
            raise ExecutorError("give either workers (a local cluster) or scheduler (an existing one), not both")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise ExecutorError(f"workers: expected a positive integer, got {workers!r}")
        import dask
        from distributed import Client, LocalCluster

        self.exclusive_timing, self.dashboard = exclusive_timing, dashboard
        self.connect_timeout = connect_timeout
        self.cluster = None
        if scheduler is not None:
            if "://" not in scheduler and ":" not in scheduler:
                raise ExecutorError(f"scheduler {scheduler!r}: expected an address such as tcp://HOST:8786")
            from distributed.comm.registry import backends as comm_schemes

            scheme = scheduler.split("://", 1)[0] if "://" in scheduler else "tcp"
            if scheme not in comm_schemes:  # refused before a Client exists: no Client.__del__ timeout afterwards
                raise ExecutorError(
                    f"scheduler {scheduler!r}: unknown address scheme {scheme!r}; valid: {sorted(comm_schemes)} "
                    "(e.g. tcp://HOST:8786)"
                )
            try:
                with dask.config.set({"distributed.comm.timeouts.connect": f"{connect_timeout}s"}):
                    self.client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ExecutorError(
                    f"scheduler {scheduler}: cannot connect within {connect_timeout:g} s ({type(exc).__name__}: "
                    f"{exc}); is `dask scheduler` running there?"
                ) from None
        else:
            # one task at a time per single-threaded worker: a killed worker takes down only the cell it ran
            cfg = {
                "distributed.scheduler.allowed-failures": allowed_failures,
                "distributed.scheduler.worker-saturation": 1.0,
            }
            with dask.config.set(cfg), _sigint_ignored():
                opts = dict(
                    threads_per_worker=1,
                    processes=True,
                    env=worker_env(1),
                    preload=list(preload),
                    dashboard_address=":0",
                    scheduler_kwargs={"dashboard": bool(dashboard)},
                    silence_logs=40,
                )
                n_gpu = min(gpu_workers, workers)
                try:
                    self.cluster = LocalCluster(n_workers=workers - n_gpu, **opts)
                    if n_gpu:  # the last workers offer one GPU each (public scale-up with an amended spec)
                        self.cluster.new_spec["options"]["resources"] = {"GPU": 1}
                        self.cluster.scale(workers)
                    self.client = Client(self.cluster, set_as_default=False)
                    self.client.wait_for_workers(workers, timeout=120)
                except (OSError, TimeoutError) as exc:
                    if self.cluster is not None:
                        self.cluster.close()
                    raise ExecutorError(f"could not start {workers} local workers within 120 s: {exc}") from None
        self._starts: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self.client.subscribe_topic(TOPIC, self._on_start)

    def _on_start(self, event: tuple[float, dict[str, Any]]) -> None:
        _, msg = event
        with self._lock:
            self._starts[msg["key"]] = (time.monotonic(), msg["worker"])

    @property
    def slots(self) -> int:  # type: ignore[override]
        return max(1, sum(w["nthreads"] for w in self.client.scheduler_info()["workers"].values()))

    def _offered(self) -> dict[str, float]:
        """The largest amount of each resource one worker offers."""
        best: dict[str, float] = {}
        for w in self.client.scheduler_info()["workers"].values():
            for r, v in (w.get("resources") or {}).items():
                best[r] = max(best.get(r, 0.0), v)
        return best

    def map_unordered(self, fn, items, *, key=str, resources=None, timeout=None) -> Iterator[TaskResult]:  # noqa: ANN001
        from distributed import wait
        from distributed.client import FuturesCancelledError

        token = uuid.uuid4().hex[:8]
        offered = self._offered()
        by_key: dict[str, Any] = {}
        groups: dict[tuple, list[str]] = {}  # one graph update per resource need (CPU cells, GPU cells)
        for item in items:
            res = (resources(item) if resources else None) or None
            missing = [r for r, v in (res or {}).items() if offered.get(r, 0) < v]
            if missing:
                need = ",".join(f"{r}={res[r]:g}" for r in missing)
                yield TaskResult(
                    item,
                    error=f"no worker offers {need}; start one with `dask worker SCHEDULER --resources {need}`",
                    kind="unavailable",
                )
                continue
            k = f"stochgrad-{key(item)}-{token}"  # one task group "stochgrad": queued on the scheduler when large
            by_key[k] = item
            groups.setdefault(tuple(sorted((res or {}).items())), []).append(k)
        futures = []
        for res_items, keys in groups.items():
            futures += self.client.map(
                _remote,
                [by_key[k] for k in keys],
                key=keys,
                resources=dict(res_items) or None,
                pure=False,
                run=fn,
                exclusive=self.exclusive_timing,
            )
        pending = set(futures)
        lost_since: float | None = None
        try:
            while pending:
                if self.client.status != "running":  # reconnecting to a lost scheduler
                    lost_since = lost_since or time.monotonic()
                    if time.monotonic() - lost_since > self.connect_timeout:
                        raise ExecutorError(
                            f"lost the Dask scheduler ({self.client.status} for more than "
                            f"{self.connect_timeout:g} s); finished cells are saved, continue with "
                            "--resume"
                        )
                else:
                    lost_since = None
                try:
                    with self.client.as_current():
                        done, pending = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
                except (TimeoutError, OSError):  # nothing finished yet, or the connection dropped (checked above)
                    done = set()
                except FuturesCancelledError as exc:  # the client gave up on the scheduler
                    raise ExecutorError(
                        f"lost the Dask scheduler ({str(exc).splitlines()[-1].strip()}); finished "
                        "cells are saved, continue with --resume"
                    ) from None
                for f in done:
                    yield self._result(f, by_key[f.key])
                    f.release()
                if timeout:
                    for f in list(pending):
                        late = self._late(f.key, timeout)
                        if late:
                            pending.discard(f)
                            f.cancel()
                            # kill the stuck process from its event loop (the task's thread cannot be interrupted);
                            # its nanny starts a fresh worker
                            self.client.run(_die, workers=[late], wait=False)
                            yield TaskResult(
                                by_key[f.key],
                                error=f"time limit: still running after {timeout:g} s "
                                f"(cell_timeout); worker {late} restarted",
                                kind="timeout",
                            )
        finally:
            if pending and self.client.status == "running":
                self.client.cancel(list(pending))

    def _late(self, key: str, timeout: float) -> str | None:
        with self._lock:
            start = self._starts.get(key)
        return start[1] if start and time.monotonic() - start[0] > timeout else None

    def _result(self, f: Any, item: Any) -> TaskResult:
        from distributed import KilledWorker

        if f.status == "finished":
            return TaskResult(item, f.result())
        if f.status == "error":
            exc = f.exception()
            if isinstance(exc, KilledWorker):
                return TaskResult(
                    item,
                    error=f"its worker died {exc.allowed_failures + 1} times while running it "
                    "(killed, segfault or out of memory); gave up (distributed.scheduler.allowed-failures)",
                    kind="killed",
                )
            return TaskResult(item, error=f"{type(exc).__name__}: {exc}", kind="exception")
        raise ExecutorError(
            f"lost the Dask scheduler (task {f.key} is {f.status}); finished cells are saved, continue with --resume"
        )

    def describe(self) -> dict[str, Any]:
        info = self.client.scheduler_info()
        ws = info["workers"].values()
        names = self.client.run(socket.gethostname)  # host names as the workers see them
        return {
            "kind": "dask-local" if self.cluster is not None else "dask",
            "scheduler": info.get("address"),
            "workers": len(info["workers"]),
            "threads_per_worker": {w.get("name", a): w["nthreads"] for a, w in info["workers"].items()},
            "resources": {
                str(w.get("name", a)): w.get("resources", {}) for a, w in info["workers"].items() if w.get("resources")
            },
            "hosts": sorted(set(names.values())),
            "addresses": sorted({w["host"] for w in ws}),
            "exclusive_timing": self.exclusive_timing,
            "dashboard": self._dashboard(),
        }

    def _dashboard(self) -> str | None:
        if self.cluster is not None and not self.dashboard:
            return None
        try:
            return self.client.dashboard_link
        except (KeyError, AttributeError):  # no dashboard (local clusters start without one unless asked)
            return None

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def registering_modules() -> list[str]:
    """Importable modules (besides the built-in ``estimators`` package) that registered estimators in this process:
    local workers preload them, so an estimator registered by an imported module runs on workers too."""
    out = []
    for mod in sorted({e.source for e in registry.declarations()}):
        if mod == "__main__" or mod.startswith(f"{registry.BUILTIN_PACKAGE}."):
            continue
        try:
            if importlib.util.find_spec(mod) is not None:
                out.append(mod)
        except (ImportError, ValueError):
            pass
    return out


def make_executor(workers: int | None = None, scheduler: str | None = None, **kw: Any) -> Executor:
    """The executor for the run options: in-process when neither ``workers`` nor ``scheduler`` is given."""
    if workers is None and scheduler is None:
        return InProcessExecutor()
    return DaskExecutor(workers, scheduler, **kw)
