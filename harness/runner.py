"""Run cells: R replicate estimates in vectorized chunks (memory-bounded), metrics, per-call timing.

Data flow: Cell -> Problem (exact gradient) -> backend adapter -> estimator(ctx) -> [R, *shape] arrays
-> :func:`harness.metrics.summarize` -> tidy rows (one per parameter).  Timing calls use R = 1.

Chunks: one estimator call computes ``chunk`` replicates at once; the chunk is sized so that about
``MEMORY_OVERHEAD`` live arrays of the sample's shape [chunk, L, *event] fit in ``max_memory`` bytes, and R
is split into equal chunks (a JAX cell compiles once per distinct chunk size).  With ``precision = P``,
R is the minimum: rounds of chunks are added (each round at most x4 the replicates so far, chunk sizes
growing x4 only where per-call overhead matters) until every parameter's variance has a 95% CI half-width
<= P × variance, or ``max_replicates`` / ``max_seconds`` is reached (then ``precision_capped``).
Estimates land in preallocated float64 arrays (no concatenation copies).  Prepared callables are cached
(LRU, keyed by estimator, problem, L, chunk size, dtype, device), so repeated cells skip recompilation.
See docs/notes/measurement.md.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backends import Backend, get_backend
from harness.cells import Cell
from harness.context import make_context
from harness.metrics import CI_METHOD, summarize, worst_rel_halfwidth
from harness.problems import Problem
from harness.registry import EstimatorSpec, get_estimator
from harness.timing import Timing, TimingConfig, thread_settings, time_call

DEFAULT_MAX_MEMORY = 256 * 2**20  # bytes per vectorized chunk (``--max-memory`` is in MiB); 256 MiB: see perf notes
MEMORY_OVERHEAD = 48  # live arrays per sample element; measured peaks: 2-8 typical, 42 worst (arsm, torch)
DEFAULT_PRECISION = 0.05  # ``stochgrad run`` default target (relative CI half-width of every variance)
DEFAULT_MAX_REPLICATES = 2**20  # replicate cap of the precision loop when none is given
DEFAULT_MAX_SECONDS = 60.0  # time cap of the precision loop per cell
GROWTH = 4  # chunk sizes of the precision loop: first_chunk × GROWTH^k (bounded by memory)
EFFICIENT_CHUNK = 2**18  # sample elements per call above which per-call overhead is negligible
_CACHE_SIZE = 32


@dataclass
class Caller:
    """A prepared estimator call: ``run(seed)`` draws fresh noise; ``timed()`` reuses one noise source."""

    run: Callable[[int], dict[str, Any]]
    timed: Callable[[], dict[str, Any]]
    B: Backend


_CALLERS: OrderedDict[str, Caller] = OrderedDict()


def _cache_key(spec: EstimatorSpec, problem: Problem, **kw: Any) -> str:
    ident = {"est": [spec.name, spec.backend, id(spec.fn)], "problem": problem.spec.to_dict(), **kw}
    return json.dumps(ident, sort_keys=True, default=str)


def prepare(
    spec: EstimatorSpec,
    problem: Problem,
    B: Backend,
    *,
    L: int,
    R: int,
    hyper: dict[str, Any],
    dtype: str,
    device: str,
    jit: bool = True,
    compile_backend: str | None = None,
    cache: bool = True,
) -> Caller:
    """Build (or reuse) the callable for R replicates: JAX jit-compiles on the first call; with
    ``compile_backend`` (e.g. "inductor") a torch estimator is wrapped in ``torch.compile``.
    ``cache=False`` always builds a fresh one (so its first call includes compilation)."""
    hyper = {**spec.defaults(), **hyper}
    key = _cache_key(spec, problem, L=L, R=R, hyper=hyper, dtype=dtype, device=device, jit=jit, cb=compile_backend)
    if cache and key in _CALLERS:
        _CALLERS.move_to_end(key)
        return _CALLERS[key]
    caller = _build(spec, problem, B, L=L, R=R, hyper=hyper, dtype=dtype, device=device, jit=jit, cb=compile_backend)
    if cache:
        _CALLERS[key] = caller
        while len(_CALLERS) > _CACHE_SIZE:
            _CALLERS.popitem(last=False)
    return caller


def _build(
    spec: EstimatorSpec, problem: Problem, B: Backend, *, L: int, R: int, hyper: dict, dtype: str, device: str,
    jit: bool, cb: str | None,
) -> Caller:  # fmt: skip
    template = make_context(problem, B, L=L, R=R, noise=None, hyper=hyper, dtype=dtype, device=device)  # type: ignore[arg-type]
    if B.name == "jax":
        import jax

        def inner(params: dict, key: Any) -> dict:
            return spec.fn(template.with_(params=params, noise=B.make_noise(key, dtype)))  # type: ignore[attr-defined]

        f = B.compile(inner, jit=jit)
        dev = B._device(device)  # type: ignore[attr-defined]
        key0 = jax.device_put(jax.random.PRNGKey(12345), dev)
        return Caller(
            run=lambda seed: f(template.params, jax.device_put(jax.random.PRNGKey(seed % 2**63), dev)),
            timed=lambda: f(template.params, key0),
            B=B,
        )
    fn = spec.fn
    if cb and B.name == "torch":
        import torch

        fn = torch.compile(spec.fn, backend=cb, dynamic=False)
    persistent = template.with_(noise=B.noise(12345, dtype, device))
    return Caller(
        run=lambda seed: fn(template.with_(noise=B.noise(seed, dtype, device))),
        timed=lambda: fn(persistent),
        B=B,
    )


def chunk_size(problem: Problem, L: int, R: int, dtype: str, max_memory: int) -> int:
    """Largest replicate count (<= R, >= 1) whose estimated working set fits in ``max_memory`` bytes.

    A single replicate larger than the budget still runs (chunk 1): an L-sample estimate cannot be split.
    """
    per_rep = L * int(np.prod(problem.event_shape)) * np.dtype(dtype).itemsize * MEMORY_OVERHEAD
    return int(min(R, max(1, max_memory // max(per_rep, 1))))


def plan_chunks(R: int, max_chunk: int) -> list[int]:
    """R split into equal chunks of at most ``max_chunk`` (total >= R, surplus < number of chunks)."""
    n = -(-R // max_chunk)
    return [-(-R // n)] * n


def _to_numpy(B: Backend, grads: dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
    missing = set(names) - set(grads)
    if missing:
        raise ValueError(f"estimator returned no gradient for {sorted(missing)}")
    return {k: np.asarray(B.to_numpy(grads[k]), dtype=np.float64) for k in names}


def estimate(
    spec: EstimatorSpec,
    problem: Problem,
    *,
    L: int,
    R: int,
    seed: int,
    hyper: dict[str, Any] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    max_memory: int = DEFAULT_MAX_MEMORY,
    precision: float | None = None,
    max_replicates: int | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    compile_backend: str | None = None,
    jit: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """R replicate L-sample estimates as float64 NumPy arrays [R, *shape] (more than R with ``precision``).

    ``jit=False`` runs JAX eagerly (tests: nothing to compile).  ``max_seconds`` is the time budget for replicates beyond the first R (a slow JAX compilation of the
    first chunk does not eat it).  ``info``: chunk_replicates (first chunk size), n_chunks,
    estimate_seconds, precision_target, precision_achieved (worst relative CI half-width; NaN without a
    target), precision_capped, precision_cap_reason ("", "replicates" or "time").
    """
    B = get_backend(spec.backend)
    precision = precision or None  # 0 means a fixed R
    max_chunk = chunk_size(problem, L, 2**62, dtype, max_memory)
    elems = L * int(np.prod(problem.event_shape))
    first = plan_chunks(R, max_chunk)
    names = problem.param_names
    ss = np.random.SeedSequence(seed)
    store: dict[str, np.ndarray] = {}  # preallocated [capacity, *shape]: no concatenation copies
    t_start = time.perf_counter()
    n = calls = 0

    def draw(size: int) -> None:
        nonlocal n, calls
        caller = prepare(spec, problem, B, L=L, R=size, hyper=hyper or {}, dtype=dtype, device=device, jit=jit,
                         compile_backend=compile_backend)  # fmt: skip
        child = int(ss.spawn(1)[0].generate_state(1, dtype=np.uint64)[0] >> np.uint64(2))
        out = _to_numpy(B, caller.run(child), names)
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
    info: dict[str, Any] = {"chunk_replicates": first[0], "precision_target": precision or math.nan,
                            "precision_achieved": math.nan, "precision_capped": False, "precision_cap_reason": ""}  # fmt: skip
    if precision is not None:
        cap = max(max_replicates or DEFAULT_MAX_REPLICATES, n)
        start = time.perf_counter()  # max_seconds bounds the replicates beyond R (not R's compilation)
        while True:
            worst = worst_rel_halfwidth({k: v[:n] for k, v in store.items()})
            info["precision_achieved"] = worst
            if not worst > precision:  # also stops on NaN
                break
            reason = "replicates" if n >= cap else "time" if time.perf_counter() - start > max_seconds else ""
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
            while n < goal and time.perf_counter() - start <= max_seconds:
                draw(size)
    info["n_chunks"] = calls
    info["estimate_seconds"] = time.perf_counter() - t_start
    total = n if precision is not None else R
    return {k: (v[:total] if v.shape[0] - total < 0.25 * total else v[:total].copy()) for k, v in store.items()}, info


def time_estimator(
    spec: EstimatorSpec,
    problem: Problem,
    *,
    L: int,
    hyper: dict[str, Any] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    cfg: TimingConfig | None = None,
    compile_backend: str | None = None,
) -> Timing:
    """Per-call time at R = 1 (as in training): compilation separated, warm-up, device synchronized.

    A fresh (uncached) callable is built, so ``compile_time_s`` really contains the compilation.
    """
    B = get_backend(spec.backend)
    caller = prepare(spec, problem, B, L=L, R=1, hyper=hyper or {}, dtype=dtype, device=device,
                     compile_backend=compile_backend, cache=False)  # fmt: skip
    return time_call(caller.timed, B.sync, cfg)


def _scalar_or_nan(v: Any) -> float:
    a = np.asarray(v, dtype=np.float64)
    return float(a.ravel()[0]) if a.size and np.all(a == a.ravel()[0]) else math.nan


@dataclass
class CellOutcome:
    cell: Cell
    status: str  # ok | skipped | failed
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0


def cell_rows(
    cell: Cell,
    spec: EstimatorSpec,
    problem: Problem,
    G: dict[str, np.ndarray],
    info: dict[str, Any],
    timing: Timing | None,
) -> list[dict[str, Any]]:
    """Tidy rows, one per parameter: identity, metrics with CIs, timing, efficiency, precision flags."""
    ex = problem.exact
    base: dict[str, Any] = {
        "suite": cell.suite,
        "estimator": cell.estimator,
        "backend": cell.backend,
        "device": cell.device,
        "distribution": problem.dist.name,
        "objective": problem.objective.name,
        "dim": problem.dim,
        "n_samples": cell.n_samples,
        "dtype": cell.dtype,
        "family": spec.family,
        "unbiased": spec.unbiased,
        "problem": problem.label(),
        "cell_key": cell.key(),
        "seed": cell.cell_seed(),
        "exact_method": ex.method,
        "exact_abs_err": ex.abs_err,
        "exact_value": ex.value,
    }
    for k, v in problem.params_np.items():
        base[f"p_{k}"] = _scalar_or_nan(v)
    for k, v in problem.op.items():
        base[f"o_{k}"] = _scalar_or_nan(v)
    for k, v in {**spec.defaults(), **cell.hyper}.items():
        base[f"h_{k}"] = v if isinstance(v, str) else float(v)
    tm = timing.as_dict() if timing else Timing.empty()
    eps = float(np.finfo(cell.dtype).eps)
    metrics = {name: summarize(G[name], ex.grads[name], rel_eps=eps) for name in problem.param_names}
    rel = [m["variance_rel_halfwidth"] for m in metrics.values()]
    achieved = math.nan if any(not math.isfinite(r) for r in rel) else max(rel)
    run = {
        "precision_target": info.get("precision_target", math.nan),
        "precision_achieved": achieved,
        "precision_capped": bool(info.get("precision_capped", False)),
        "precision_cap_reason": info.get("precision_cap_reason", ""),
        "n_chunks": int(info.get("n_chunks", 0)),
        "chunk_replicates": int(info.get("chunk_replicates", 0)),
        "estimate_seconds": info.get("estimate_seconds", math.nan),
        "ci_method": CI_METHOD,
        "threads": int(thread_settings()["threads"]),
    }
    rows = []
    for name, m in metrics.items():
        row = {**base, "param": name, "n_replicates": int(G[name].shape[0]), **m, **tm, **run}
        t = tm["time_median_s"]
        row["efficiency"] = m["variance"] * t
        row["efficiency_ci_low"] = m["variance_ci_low"] * t
        row["efficiency_ci_high"] = m["variance_ci_high"] * t
        snr = m.get("snr", math.nan)
        row["samples_to_snr1"] = cell.n_samples / snr**2 if snr and snr > 0 and math.isfinite(snr) else math.nan
        rows.append(row)
    return rows


def run_cell(cell: Cell) -> CellOutcome:
    """Measure one cell.  Never raises for estimator errors: they become a ``failed`` outcome.

    Runner options (``cell.options``): precision (0/absent: fixed R), max_replicates, max_seconds,
    max_memory (MiB), timing_max_s, compile_backend (torch.compile backend, experimental).
    """
    t0 = time.perf_counter()
    B = get_backend(cell.backend)
    reason = B.device_error(cell.device)
    if reason:
        return CellOutcome(cell, "skipped", message=reason)
    try:
        spec = get_estimator(cell.estimator, cell.backend)
        if hasattr(cell.problem, "workload"):  # a model workload cell: harness.workloads.measure does it all
            from harness.workloads.measure import run_workload_cell

            rows = run_workload_cell(cell, spec)
            return CellOutcome(cell, "ok", rows=rows, seconds=time.perf_counter() - t0)
        problem = cell.problem.build()
        opts = cell.options
        mem = opts.get("max_memory")
        cb = opts.get("compile_backend")
        G, info = estimate(
            spec,
            problem,
            L=cell.n_samples,
            R=cell.n_replicates,
            seed=cell.cell_seed(),
            hyper=cell.hyper,
            dtype=cell.dtype,
            device=cell.device,
            max_memory=int(float(mem) * 2**20) if mem else DEFAULT_MAX_MEMORY,
            precision=opts.get("precision"),
            max_replicates=opts.get("max_replicates"),
            max_seconds=float(opts.get("max_seconds", DEFAULT_MAX_SECONDS)),
            compile_backend=cb,
        )
        timing = None
        if cell.timing:
            cfg = TimingConfig(max_time_s=float(opts.get("timing_max_s", 0.5)))
            timing = time_estimator(spec, problem, L=cell.n_samples, hyper=cell.hyper, dtype=cell.dtype,
                                    device=cell.device, cfg=cfg, compile_backend=cb)  # fmt: skip
        rows = cell_rows(cell, spec, problem, G, info, timing)
    except Exception as exc:  # one broken cell never stops a run
        msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return CellOutcome(cell, "failed", message=msg, seconds=time.perf_counter() - t0)
    return CellOutcome(cell, "ok", rows=rows, seconds=time.perf_counter() - t0)
