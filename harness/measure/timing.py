"""Per-call wall-clock timing and thread pinning.

``time_call`` measures ``fn`` as it would be called in training:

1. the first call is timed alone (``first_call_s``; for a jitted function it includes tracing and
   compilation unless the call was compiled ahead, reported as ``compile_time_s = first_call_s - time_median_s``;
   a suite cell on JAX reports the compile seconds counted by ``jax.monitoring`` instead:
   :func:`harness.measure.runner.compile_seconds`);
2. warm-up: at least ``warmup`` calls and ``warmup_s`` seconds;
3. an inner loop count ``number`` is chosen so one sample lasts >= ``min_sample_s`` (clock resolution and
   the loop's own overhead become negligible, as in ``timeit``/``torch.utils.benchmark``);
4. samples (each the mean of ``number`` calls) are taken until IQR/median <= ``target_rel_iqr`` after
   ``min_repeats`` samples, or ``max_time_s`` is spent (then ``time_converged`` is False).

Every call is followed by ``sync(out)`` inside the timed region (``torch.cuda.synchronize`` on the output's
devices, ``jax.block_until_ready``), so asynchronous dispatch is never mistaken for speed.  The garbage
collector is disabled while sampling (as ``timeit`` does).

``pin_threads`` sets one thread count for every backend (see its docstring); ``thread_settings`` records
what is in effect (meta.json and the ``threads`` column).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np


@dataclass
class Timing:
    time_median_s: float
    time_iqr_s: float
    compile_time_s: float
    time_samples: int
    time_inner_loops: int
    first_call_s: float
    time_min_s: float = float("nan")
    time_converged: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def empty(cls) -> dict[str, Any]:
        """The columns of an untimed cell (NaN, and False for ``time_converged``)."""
        return {f.name: (False if f.name == "time_converged" else float("nan")) for f in fields(cls)}


@dataclass
class TimingConfig:
    warmup: int = 2
    warmup_s: float = 0.02
    min_repeats: int = 7
    max_repeats: int = 200
    target_rel_iqr: float = 0.05
    max_time_s: float = 1.0
    min_sample_s: float = 0.01  # as asv: one sample = enough calls for 10 ms


def time_call(
    fn: Callable[[], Any],
    sync: Callable[[Any], None],
    cfg: TimingConfig | None = None,
    clock: Callable[[], float] = time.perf_counter,
    samples_out: list[float] | None = None,
) -> Timing:
    """Median and IQR of the per-call time of ``fn`` (see the module docstring for the protocol).

    ``samples_out``, when given, receives the samples (each the mean of ``time_inner_loops`` calls), so a caller
    can pool them with more taken later by :func:`more_samples`."""
    cfg = cfg or TimingConfig()
    t0 = clock()
    sync(fn())
    first = clock() - t0
    n, t_start, one = 0, clock(), first
    while n < cfg.warmup or clock() - t_start < cfg.warmup_s:
        t0 = clock()
        sync(fn())
        one = clock() - t0
        n += 1
    number = max(1, int(np.ceil(cfg.min_sample_s / max(one, 1e-7))))
    samples: list[float] = []
    converged = False
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start, next_check = clock(), cfg.min_repeats
        while len(samples) < cfg.max_repeats:
            t0 = clock()
            for _ in range(number):
                sync(fn())
            samples.append((clock() - t0) / number)
            if len(samples) >= next_check:  # checks at geometrically spaced counts: O(n log n) in total
                next_check = max(next_check + 1, int(next_check * 1.25))
                q1, med, q3 = np.percentile(samples, [25, 50, 75])
                if q3 - q1 <= cfg.target_rel_iqr * med:
                    converged = True
                    break
            if clock() - start > cfg.max_time_s and len(samples) >= cfg.min_repeats:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    if samples_out is not None:
        samples_out.extend(samples)
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(
        time_median_s=float(med),
        time_iqr_s=float(q3 - q1),
        compile_time_s=float(max(first - med, 0.0)),
        time_samples=len(samples),
        time_inner_loops=number,
        first_call_s=float(first),
        time_min_s=float(min(samples)),
        time_converged=converged,
    )


def more_samples(
    fn: Callable[[], Any],
    sync: Callable[[Any], None],
    number: int,
    seconds: float,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """More samples of an already-timed (warm) ``fn``, each the mean of ``number`` calls, for about ``seconds``
    (at least one): to pool with :func:`time_call`'s samples (same ``number``).  One call first, untimed (a cache
    the machine's other work evicted is refilled outside the samples)."""
    sync(fn())
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        while not samples or clock() - start < seconds:
            t0 = clock()
            for _ in range(number):
                sync(fn())
            samples.append((clock() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


# -- threads -----------------------------------------------------------------------------------------
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_XLA_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads")
_PINNED: dict[str, Any] = {}


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _env_threads() -> int | None:
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else None


def _jax_initialized() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:
        return True  # cannot tell: assume the worst


def pin_threads(n: int | None = None, *, affinity: bool | None = None) -> dict[str, Any]:
    """Use ``n`` threads in NumPy, PyTorch and JAX alike (default: ``$OMP_NUM_THREADS``, else all CPUs).

    - environment: OMP/MKL/OpenBLAS/... ``*_NUM_THREADS = n`` (BLAS pools loaded later, child processes);
    - PyTorch: ``torch.set_num_threads(n)`` and, when still allowed, ``set_num_interop_threads(n)``;
    - JAX/XLA: with ``n = 1``, XLA_FLAGS get ``--xla_cpu_multi_thread_eigen=false
      intra_op_parallelism_threads=1``; XLA otherwise sizes its CPU pool from the process's CPU affinity
      mask, so for 1 < n < available CPUs the process is restricted to n CPUs (``os.sched_setaffinity``;
      ``affinity`` defaults to True exactly then, when ``n`` was given).  Both take effect only if JAX's
      backend has not started yet (recorded as ``jax_pinned``);
    - NumPy ufuncs are single-threaded; its BLAS follows the environment (and threadpoolctl if installed).

    Call it once, early (``stochgrad run`` and ``make perf`` do, before any backend runs).
    Returns :func:`thread_settings`.
    """
    avail = available_cpus()
    explicit = n is not None
    n = int(n or _env_threads() or avail)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    if affinity is None:
        affinity = explicit and 1 < n < avail
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    jax_ready = not _jax_initialized()
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_XLA_THREAD_FLAGS)]
    if n == 1:
        flags += ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    if affinity and n < avail and hasattr(os, "sched_setaffinity"):  # threads inherit the mask
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:n])
    torch = sys.modules.get("torch")  # not imported yet: it reads OMP_NUM_THREADS when it is
    if torch is not None:
        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # only allowed before any inter-op work
            torch.set_num_interop_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    _PINNED.update(requested=n, jax_pinned=jax_ready)
    return thread_settings()


def thread_settings() -> dict[str, Any]:
    """Thread counts in effect: ``threads`` (the pinned count, else the available CPUs) and per library."""
    out: dict[str, Any] = {
        "threads": _PINNED.get("requested", _env_threads() or available_cpus()),
        "pinned": bool(_PINNED),
        "affinity_cpus": available_cpus(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "env": {k: os.environ.get(k) for k in THREAD_ENV},
    }
    if _PINNED:
        out["jax_pinned"] = _PINNED["jax_pinned"]
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch_num_threads"] = torch.get_num_threads()
        out["torch_interop_threads"] = torch.get_num_interop_threads()
    return out
