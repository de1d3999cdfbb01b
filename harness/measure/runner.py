"""The one runner: any target's cell -> R replicate estimates in vectorized chunks (memory-bounded), metrics, timing.

Data flow of a cell: Cell -> ``cell.target.build()`` (a :class:`harness.problems.target.Built`: a problem, a
workload at a checkpoint, ...) -> its parts (the estimator calls one estimate makes: one for a problem, one per
example for a workload) -> backend adapter -> estimator(ctx) -> [R, *shape] arrays per part -> the target gathers
them and reads out the rows' gradients with their truth (a workload chains η-gradients to its encoder weights) ->
:func:`harness.results.cell_rows` (metrics by :mod:`harness.stats.metrics`) -> tidy rows.  The runner asks the
target these questions and gets answers back; the target never calls the runner.  Timing calls use R = 1: one
estimate's estimator calls in sequence, plus a readout's post-processing on one replicate.

Chunks: one estimator call computes ``chunk`` replicates at once; the chunk is sized so that about
``MEMORY_OVERHEAD`` live arrays of the sample's shape [chunk, L, *event] fit in ``max_memory`` bytes, and R
is split into equal chunks (a JAX cell compiles once per distinct chunk size).  With ``precision = P``,
R is the minimum: rounds of chunks are added (each round at most x4 the replicates so far, chunk sizes
growing x4 only where per-call overhead matters) until every parameter's variance has a 95% CI half-width
<= P × variance, or ``max_replicates`` / ``max_seconds`` is reached (then ``precision_capped``).
Estimates land in preallocated float64 arrays (no concatenation copies).  Prepared callables are cached
(LRU, keyed by estimator, problem, L, chunk size, dtype, device); beneath them the JAX backend keeps one compiled
function per (estimator, problem compile key, L, chunk size, hyperparameters, dtype, device), so the examples of a
batch and the checkpoints of a workload share one compilation (their η, data and weights are arguments).
See docs/notes/measurement.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.backends import Backend, get_backend
from harness.measure.cells import Cell
from harness.measure.timing import Timing, TimingConfig, thread_settings, time_call
from harness.problems.target import Built, Part
from harness.registry import EXACT_VALUE, Implementation, get_estimator, make_context
from harness.registry.interrupts import EstimatorExit, as_failure
from harness.results import CellOutcome, cell_rows, scalar_or_nan
from harness.stats.metrics import worst_rel_halfwidth

DEFAULT_MAX_MEMORY = 256 * 2**20  # bytes per vectorized chunk (``--max-memory`` is in MiB); 256 MiB: see perf notes
MEMORY_OVERHEAD = 48  # live arrays per sample element; measured peaks: 2-8 typical, 42 worst (arsm, torch)
DEFAULT_PRECISION = 0.05  # ``stochgrad run`` default target (relative CI half-width of every variance)
DEFAULT_MAX_REPLICATES = 2**20  # replicate cap of the precision loop when none is given
DEFAULT_MAX_SECONDS = 60.0  # time cap of the precision loop per cell
GROWTH = 4  # chunk sizes of the precision loop: first_chunk × GROWTH^k (bounded by memory)
EFFICIENT_CHUNK = 2**18  # sample elements per call above which per-call overhead is negligible
_CACHE_SIZE = 32
COUNT_KEYS = ("f_evals", "grad_evals", "aux_evals")  # info keys: evaluations per L-sample estimate


@dataclass(frozen=True)
class MeasureRequest:
    """What to measure and how: one estimator implementation on one problem (the runner's single argument).

    ``problem`` is what the estimator's Context is built from: a :class:`harness.problems.Problem`, or one part of
    a target (e.g. one example of a workload batch).

    ``precision`` (0/None: a fixed R) makes R a minimum: replicates are added until every variance's 95% CI
    half-width is <= precision × variance, or ``max_replicates`` / ``max_seconds`` is reached.  ``jit=False`` runs
    JAX eagerly (tests: nothing to compile); ``compile_backend`` wraps torch estimators in torch.compile.
    """

    spec: Implementation
    problem: Any
    L: int
    R: int
    seed: int = 0
    hyper: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float64"
    device: str = "cpu"
    max_memory: int = DEFAULT_MAX_MEMORY
    precision: float | None = None
    max_replicates: int | None = None
    max_seconds: float = DEFAULT_MAX_SECONDS
    compile_backend: str | None = None
    jit: bool = True

    def with_(self, **kw: Any) -> MeasureRequest:
        return replace(self, **kw)

    @property
    def hyper_full(self) -> dict[str, Any]:
        return {**self.spec.defaults(), **self.hyper}


@dataclass
class Caller:
    """A prepared estimator call: ``run(seed)`` draws fresh noise; ``timed()`` reuses one noise source; ``ahead()``
    compiles it without running it (:class:`harness.backends.base.PreparedCall`).

    ``last_counts`` holds the evaluations (f, grad, aux) per L-sample estimate that the latest ``run`` made, counted
    by the Context (:class:`harness.registry.EvalCounts`)."""

    run: Callable[[int], dict[str, Any]]
    timed: Callable[[], dict[str, Any]]
    B: Backend
    ahead: Callable[[], None]
    last_counts: tuple[float, float, float] = (math.nan, math.nan, math.nan)


_CALLERS: OrderedDict[str, Caller] = OrderedDict()
_TIMING_GUARD: list[Callable[[], contextlib.AbstractContextManager]] = [contextlib.nullcontext]


def set_timing_guard(guard: Callable[[], contextlib.AbstractContextManager]) -> None:
    """Context manager factory held around each cell's timing phase (Dask workers: a cluster-wide lock)."""
    _TIMING_GUARD[0] = guard


def prepare(req: MeasureRequest, R: int | None = None, *, cache: bool = True) -> Caller:
    """Build (or reuse) the callable for ``R`` (default ``req.R``) replicates through the backend adapter.
    ``cache=False`` always builds a fresh one (so its first call includes compilation)."""
    R = req.R if R is None else R
    hyper = req.hyper_full
    ident = {
        "est": [req.spec.name, req.spec.backend, id(req.spec.fn)],
        "problem": req.problem.spec.to_dict(),
        "L": req.L,
        "R": R,
        "hyper": hyper,
        "dtype": req.dtype,
        "device": req.device,
        "jit": req.jit,
        "cb": req.compile_backend,
    }
    key = json.dumps(ident, sort_keys=True, default=str)
    if cache and key in _CALLERS:
        _CALLERS.move_to_end(key)
        return _CALLERS[key]
    B = get_backend(req.spec.backend)
    template = make_context(req.problem, B, L=req.L, R=R, noise=None, hyper=hyper, dtype=req.dtype, device=req.device)
    fitted: dict[str, Any] = {}
    if req.spec.constants is not None:  # fitted on the host, outside the measured (and compiled) call
        fitted.update(req.spec.constants(template))
    if req.spec.oracle:  # the exact answer an oracle reads (ctx.exact_value()) is an argument, like a fitted constant
        fitted[EXACT_VALUE] = req.problem.exact.value
    if fitted:
        template = template.with_(
            fitted={k: B.asarray(np.asarray(v), req.dtype, req.device) for k, v in fitted.items()}
        )
    # what a compiled call is specialized to: the problem's compile key (data, weights, η, fitted constants and the
    # oracle's exact value are arguments), the estimator, L, R, hyperparameters, dtype and device
    trace_key = json.dumps({**ident, "problem": req.problem.compile_key()}, sort_keys=True, default=str)
    raw, timed, ahead = B.prepare_call(
        req.spec.fn, template, jit=req.jit, compile_backend=req.compile_backend, trace_key=trace_key
    )
    counts = template.counts  # shared by every copy the prepared call makes of the template
    once = B.traces_once(jit=req.jit, compile_backend=req.compile_backend)
    traced: list[tuple[float, float, float]] = []

    def run(seed: int) -> dict[str, Any]:
        # eager calls count every time; a traced call counts on its tracing call only, kept for the later ones
        before = counts.snapshot()
        out = raw(seed)
        got = counts.since(before)
        if once:
            if not traced:
                traced.append(got)
            got = traced[0]
        caller.last_counts = got
        return out

    def timed_call() -> dict[str, Any]:
        before = counts.snapshot()
        out = timed()
        if once and not traced:
            traced.append(counts.since(before))
        return out

    caller = Caller(run, timed_call, B, ahead)
    if cache:
        _CALLERS[key] = caller
        while len(_CALLERS) > _CACHE_SIZE:
            _CALLERS.popitem(last=False)
    return caller


def chunk_size(problem: Any, L: int, R: int, dtype: str, max_memory: int) -> int:
    """Largest replicate count (<= R, >= 1) whose estimated working set fits in ``max_memory`` bytes.

    A single replicate larger than the budget still runs (chunk 1): an L-sample estimate cannot be split.
    """
    per_rep = L * int(np.prod(problem.event_shape)) * np.dtype(dtype).itemsize * MEMORY_OVERHEAD
    return int(min(R, max(1, max_memory // max(per_rep, 1))))


def plan_chunks(R: int, max_chunk: int) -> list[int]:
    """R split into equal chunks of at most ``max_chunk`` (total >= R, surplus < number of chunks)."""
    n = -(-R // max_chunk)
    return [-(-R // n)] * n


class EstimatorOutputError(ValueError):
    """An estimator returned something other than {param: real float array [R, *param_shape]}."""


def check_output(spec: Implementation, problem: Any, R: int, grads: Any) -> dict[str, np.ndarray]:
    """The estimator's output as float64 NumPy arrays, validated: a dict with every parameter, each exactly
    [R, *param_shape] with a real floating dtype (no broadcasting of scalars, no casts of complex/int/str)."""
    who = f"estimator {spec.name!r} [{spec.backend}]"
    if not isinstance(grads, Mapping):
        raise EstimatorOutputError(f"{who} returned {type(grads).__name__}; expected a dict {{param: array}}")
    missing = [k for k in problem.param_names if k not in grads]
    if missing:
        raise EstimatorOutputError(f"{who} returned no gradient for {missing}; expected {problem.param_names}")
    B = get_backend(spec.backend)
    out = {}
    for k in problem.param_names:
        a = (
            np.asarray(B.to_numpy(grads[k]))
            if not isinstance(grads[k], int | float | complex)
            else np.asarray(grads[k])
        )
        want = (R, *problem.params_np[k].shape)
        if a.dtype.kind != "f":
            raise EstimatorOutputError(
                f"{who}, parameter {k!r}: dtype {a.dtype} is not a real floating type; expected float32/float64 "
                f"of shape {list(want)}"
            )
        if a.shape != want:
            raise EstimatorOutputError(
                f"{who}, parameter {k!r}: shape {list(a.shape)} (dtype {a.dtype}); expected {list(want)} = "
                "[R, *param_shape]"
            )
        out[k] = a.astype(np.float64, copy=False)
    return out


def estimate(req: MeasureRequest) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """R replicate L-sample estimates as float64 NumPy arrays [R, *shape] (more than R with ``precision``).

    ``max_seconds`` is the time budget for replicates beyond the first R (a slow JAX compilation of the first
    chunk does not eat it).  ``info``: chunk_replicates (first chunk size), n_chunks, estimate_seconds,
    precision_target, precision_achieved (worst relative CI half-width; NaN without a target), precision_capped,
    precision_cap_reason ("", "replicates" or "time").
    """
    problem, L, R = req.problem, req.L, req.R
    precision = req.precision or None  # 0 means a fixed R
    max_chunk = chunk_size(problem, L, 2**62, req.dtype, req.max_memory)
    elems = L * int(np.prod(problem.event_shape))
    first = plan_chunks(R, max_chunk)
    names = problem.param_names
    ss = np.random.SeedSequence(req.seed)
    store: dict[str, np.ndarray] = {}  # preallocated [capacity, *shape]: no concatenation copies
    t_start = time.perf_counter()
    n = calls = 0
    spent = np.zeros(3)  # (f, grad, aux) evaluations per estimate, summed over replicates

    def draw(size: int) -> None:
        nonlocal n, calls
        caller = prepare(req, size)
        child = int(ss.spawn(1)[0].generate_state(1, dtype=np.uint64)[0] >> np.uint64(2))
        out = check_output(req.spec, problem, size, caller.run(child))
        spent[:] += np.asarray(caller.last_counts) * size
        for k in names:
            a = out[k]
            if k not in store or store[k].shape[0] < n + size:
                grown = np.empty((max(n + size, sum(first), int(1.5 * n)), *a.shape[1:]))
                if k in store:
                    grown[:n] = store[k][:n]
                store[k] = grown
            store[k][n : n + size] = a
        n += size
        calls += 1

    for size in first:
        draw(size)
    info: dict[str, Any] = {
        "chunk_replicates": first[0],
        "precision_target": precision or math.nan,
        "precision_achieved": math.nan,
        "precision_capped": False,
        "precision_cap_reason": "",
    }
    if precision is not None:
        cap = max(req.max_replicates or DEFAULT_MAX_REPLICATES, n)
        start = time.perf_counter()  # max_seconds bounds the replicates beyond R (not R's compilation)
        while True:
            worst = worst_rel_halfwidth({k: v[:n] for k, v in store.items()})
            info["precision_achieved"] = worst
            if not worst > precision:  # also stops on NaN
                break
            reason = "replicates" if n >= cap else "time" if time.perf_counter() - start > req.max_seconds else ""
            if reason:
                info.update(precision_capped=True, precision_cap_reason=reason)
                break
            # the half-width shrinks like 1/sqrt(n): predict the replicates still needed (at most x4 per
            # round, so a noisy early half-width cannot commit to a huge draw) and draw them in chunks of
            # the first size.  Chunks grow x4 only while they hold < EFFICIENT_CHUNK sample elements and
            # the round needs > 16 calls: each new size is a JAX compilation, dearer than a few calls.
            need = min(n * ((worst / precision) ** 2 * 1.1 - 1), 3 * n, cap - n)
            size = first[0]
            while size * elems < EFFICIENT_CHUNK and need > 16 * size and size * GROWTH <= max_chunk:
                size *= GROWTH
            goal = n + need
            while n < goal and time.perf_counter() - start <= req.max_seconds:
                draw(size)
    info["n_chunks"] = calls
    info["estimate_seconds"] = time.perf_counter() - t_start
    info.update(zip(COUNT_KEYS, (float(c) for c in spent / max(n, 1)), strict=True))
    total = n if precision is not None else R
    return {k: (v[:total] if v.shape[0] - total < 0.25 * total else v[:total].copy()) for k, v in store.items()}, info


def _merged(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """One estimate's facts from its parts' (the first part's chunking; counts and seconds summed: an estimate of a
    workload makes one estimator call per example, so its cost is the sum over the examples)."""
    if len(infos) == 1:
        return infos[0]
    return {
        **{k: float(sum(i[k] for i in infos)) for k in COUNT_KEYS},
        "chunk_replicates": infos[0]["chunk_replicates"],
        "n_chunks": sum(i["n_chunks"] for i in infos),
        "estimate_seconds": sum(i["estimate_seconds"] for i in infos),
        "precision_target": infos[0]["precision_target"],
        "precision_achieved": math.nan,
        "precision_capped": any(i["precision_capped"] for i in infos),
        "precision_cap_reason": next((i["precision_cap_reason"] for i in infos if i["precision_cap_reason"]), ""),
    }


def estimate_target(
    req: MeasureRequest, target: Built, parts: list[Part] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The target's R replicate estimates {param: [R, *shape]}: one :func:`estimate` per part, gathered.

    ``parts`` default to ``target.parts(req.seed)``; the precision loop runs only on an ``adaptive`` target.  The
    info's ``f_evals``, ``grad_evals``, ``aux_evals`` are one estimate's: the sum over its parts.
    """
    parts = target.parts(req.seed) if parts is None else parts
    precision = req.precision if target.adaptive else None
    got = [estimate(req.with_(problem=p.problem, seed=p.seed, precision=precision)) for p in parts]
    return target.gather([G for G, _ in got]), _merged([info for _, info in got])


def time_estimator(req: MeasureRequest, cfg: TimingConfig | None = None) -> Timing:
    """Per-call time at R = 1 (as in training): compilation separated, warm-up, device synchronized.

    A fresh (uncached) callable is built, so its first call includes whatever compilation it needs (on JAX none
    when an earlier call of the same estimator and shapes compiled it: the cell's ``compile_time_s`` is then counted
    by :func:`compile_seconds`).
    """
    caller = prepare(req, 1, cache=False)
    return time_call(caller.timed, caller.B.sync, cfg)


def timing_callers(req: MeasureRequest, parts: list[Part]) -> list[Caller]:
    """The R = 1 callables that time one estimate: one per part, fresh (uncached)."""
    return [prepare(req.with_(problem=p.problem), 1, cache=False) for p in parts]


def time_parts(
    req: MeasureRequest, parts: list[Part], cfg: TimingConfig | None = None, callers: list[Caller] | None = None
) -> Timing:
    """Per-call time at R = 1 of one estimate: its parts' estimator calls in sequence (fresh callables, or
    ``callers`` from :func:`timing_callers`, perhaps compiled ahead)."""
    callers = callers or timing_callers(req, parts)
    if len(callers) == 1:
        return time_call(callers[0].timed, callers[0].B.sync, cfg)
    return time_call(lambda: [c.timed() for c in callers], callers[0].B.sync, cfg)


class CompileAhead:
    """Compile callables in a background thread while the caller goes on (XLA compiles without the GIL, so on a
    machine with a free core the timing call's compilation overlaps the estimate's).  A failure is kept quiet here:
    the call itself, made later, compiles again and raises it where it is reported."""

    def __init__(self, callers: list[Caller]) -> None:
        self.thread = threading.Thread(target=self._work, args=(callers,), name="stochgrad-compile-ahead", daemon=True)
        self.thread.start()

    @staticmethod
    def _work(callers: list[Caller]) -> None:
        for c in callers:
            try:
                c.ahead()
            except BaseException:  # noqa: BLE001 - re-raised by the real call, in the cell
                return

    def join(self) -> None:
        self.thread.join()


def request_for(cell: Cell, spec: Implementation, problem: Any) -> MeasureRequest:
    """The measurement request of a cell (runner options from ``cell.options``: precision, max_replicates,
    max_seconds, max_memory (MiB), compile_backend)."""
    opts = cell.options
    mem = opts.get("max_memory")
    return MeasureRequest(
        spec,
        problem,
        L=cell.n_samples,
        R=cell.n_replicates,
        seed=cell.cell_seed(),
        hyper=dict(cell.hyper),
        dtype=cell.dtype,
        device=cell.device,
        max_memory=int(float(mem) * 2**20) if mem else DEFAULT_MAX_MEMORY,
        precision=opts.get("precision"),
        max_replicates=opts.get("max_replicates"),
        max_seconds=float(opts.get("max_seconds") or DEFAULT_MAX_SECONDS),
        compile_backend=opts.get("compile_backend"),
    )


def identity_columns(cell: Cell, spec: Implementation, target: Built) -> dict[str, Any]:
    """The identity and parameter columns of a cell's rows."""
    hyper = {**spec.defaults(), **cell.hyper}
    what = target.describe()
    base: dict[str, Any] = {
        "suite": cell.suite,
        "estimator": cell.estimator,
        "backend": cell.backend,
        "device": cell.device,
        "distribution": what["distribution"],
        "objective": what["objective"],
        "dim": what["dim"],
        "n_samples": cell.n_samples,
        "dtype": cell.dtype,
        "family": spec.family,
        "unbiased": spec.estimator.is_unbiased(hyper),
        "oracle": bool(spec.oracle),
        "problem": what["problem"],
        "cell_key": cell.key(),
        "seed": cell.cell_seed(),
    }
    base.update({k: scalar_or_nan(v) for k, v in target.parameter_columns().items()})
    base.update({f"h_{k}": (v if isinstance(v, str) else float(v)) for k, v in hyper.items()})
    return base


def run_cell(cell: Cell) -> CellOutcome:
    """Measure one cell of any target.  Never raises for estimator errors: they become a ``failed`` outcome.

    A cell whose replicates are all non-finite, or whose estimator returns malformed output, is failed; so is one
    whose estimator raises ``SystemExit``, or ``KeyboardInterrupt`` without a Ctrl-C (a real Ctrl-C or SIGTERM
    still stops the run).
    """
    try:
        with as_failure():  # a Ctrl-C, or SIGTERM (the writer's subclass), passes: it stops the run
            return _run_cell(cell)
    except EstimatorExit as exc:
        return CellOutcome(cell, "failed", message=str(exc))


def _run_cell(cell: Cell) -> CellOutcome:
    t0 = time.perf_counter()
    B = get_backend(cell.backend)
    reason = B.device_error(cell.device)
    if reason:
        return CellOutcome(cell, "skipped", message=reason)
    try:
        spec = get_estimator(cell.estimator, cell.backend)
        target = cell.target.build()
        req = request_for(cell, spec, target)
        parts = target.parts(req.seed)
        compiled0 = B.compilations()
        callers = timing_callers(req, parts) if cell.timing else []
        ahead = CompileAhead(callers) if callers and B.compiles and req.jit else None
        try:
            G, info = estimate_target(req, target, parts)
        finally:
            if ahead is not None:
                ahead.join()
        bad = [k for k, g in G.items() if not np.isfinite(g).all(axis=tuple(range(1, g.ndim))).any()]
        if bad:
            raise EstimatorOutputError(
                f"estimator {spec.name!r} [{spec.backend}]: every replicate of {bad} is non-finite"
            )
        getattr(target, "exact", None)  # the truth first (computed once per target): not the readout's time
        t_read = time.perf_counter()
        readouts = target.readouts(G, cell.backend)
        read_s = time.perf_counter() - t_read
        timing = [Timing.empty()] * len(readouts)
        if cell.timing:
            cfg = TimingConfig(max_time_s=float(cell.options.get("timing_max_s") or 0.5))
            with _TIMING_GUARD[0]():
                per_call = time_parts(req, parts, cfg, callers).as_dict()
                timing = [
                    per_call
                    if ro.post is None
                    else {
                        **per_call,
                        "time_median_s": per_call["time_median_s"] + time_call(ro.post, _no_sync, cfg).time_median_s,
                    }
                    for ro in readouts
                ]
        timing = [{**tm, "compile_time_s": compile_seconds(B, compiled0, tm)} for tm in timing]
        ident = identity_columns(cell, spec, target)
        threads = int(thread_settings()["threads"])
        rows = []
        t_rows = time.perf_counter()
        for ro, tm in zip(readouts, timing, strict=True):
            rows += cell_rows(
                {**ident, **ro.columns},
                ro.exact,
                ro.G,
                info,
                tm,
                dtype=cell.dtype,
                n_samples=cell.n_samples,
                threads=threads,
                totals=ro.totals,
            )
        read_s += time.perf_counter() - t_rows
        for row in rows:
            row["readout_seconds"] = read_s
    except Exception as exc:  # one broken cell never stops a run
        msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if isinstance(exc, ValueError) and "read-only" in str(exc):  # NumPy refused a write into an input
            msg += " (the estimator writes into ctx.params / ctx.op, which are read-only: copy before changing)"
        return CellOutcome(cell, "failed", message=msg, seconds=time.perf_counter() - t0)
    return CellOutcome(cell, "ok", rows=rows, seconds=time.perf_counter() - t0)


def compile_seconds(B: Backend, before: tuple[int, float] | None, timing: Mapping[str, Any]) -> float:
    """A cell's ``compile_time_s``: JAX, the seconds its estimate and timing spent tracing and compiling, counted by
    jax.monitoring (0 when every call reused a compilation of an earlier cell); PyTorch, the first timed call minus
    the median (torch.compile's compilation with ``compile_backend``, else eager warm-up); NumPy, NaN."""
    now = B.compilations()
    if before is not None and now is not None:
        return float(now[1] - before[1])
    return float(timing["compile_time_s"]) if B.compiles else math.nan


def _no_sync(_: Any) -> None:
    """Post-processing runs on the host (NumPy out): nothing to synchronize."""
