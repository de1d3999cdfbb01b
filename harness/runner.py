"""Run cells: R replicate estimates in vectorized chunks (memory-bounded), metrics, per-call timing.

Data flow: Cell -> Problem (exact gradient) -> backend adapter -> estimator(ctx) -> [R, *shape] arrays
-> :func:`harness.metrics.summarize` -> tidy rows (one per parameter).  Timing calls use R = 1.
With ``options["precision"] = P`` replicates are added chunk by chunk until every variance's 95% CI
half-width is <= P × variance, or the replicate/time cap is reached (flagged ``precision_capped``).
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backends import Backend, get_backend
from harness.cells import Cell
from harness.context import make_context
from harness.metrics import summarize
from harness.problems import Problem
from harness.registry import EstimatorSpec, get_estimator
from harness.timing import Timing, TimingConfig, time_call

DEFAULT_MAX_MEMORY = 512 * 2**20  # bytes per vectorized chunk (``--max-memory``)
MEMORY_OVERHEAD = 24  # live arrays per sample element (noise, z, f, grads, autodiff buffers)


@dataclass
class Caller:
    """A prepared estimator call: ``run(seed)`` draws fresh noise; ``timed()`` reuses one noise source."""

    run: Callable[[int], dict[str, Any]]
    timed: Callable[[], dict[str, Any]]
    B: Backend


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
) -> Caller:
    hyper = {**spec.defaults(), **hyper}
    template = make_context(problem, B, L=L, R=R, noise=None, hyper=hyper, dtype=dtype, device=device)  # type: ignore[arg-type]
    if B.name == "jax":
        import jax

        def inner(params: dict, key: Any) -> dict:
            return spec.fn(template.with_(params=params, noise=B.make_noise(key, dtype)))  # type: ignore[attr-defined]

        f = B.compile(inner, jit=jit)
        key0 = B.noise(0, dtype, device).key  # type: ignore[attr-defined]
        dev = B._device(device)  # type: ignore[attr-defined]
        return Caller(
            run=lambda seed: f(template.params, jax.device_put(jax.random.PRNGKey(seed % 2**63), dev)),
            timed=lambda: f(template.params, key0),
            B=B,
        )
    persistent = template.with_(noise=B.noise(12345, dtype, device))
    return Caller(
        run=lambda seed: spec.fn(template.with_(noise=B.noise(seed, dtype, device))),
        timed=lambda: spec.fn(persistent),
        B=B,
    )


def chunk_size(problem: Problem, L: int, R: int, dtype: str, max_memory: int) -> int:
    per_rep = L * int(np.prod(problem.event_shape)) * np.dtype(dtype).itemsize * MEMORY_OVERHEAD
    return int(min(R, max(1, max_memory // max(per_rep, 1))))


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
    max_seconds: float = 60.0,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """R (or more, with ``precision``) replicate L-sample estimates as float64 NumPy arrays [R, *shape]."""
    B = get_backend(spec.backend)
    chunk = chunk_size(problem, L, R, dtype, max_memory)
    caller = prepare(spec, problem, B, L=L, R=chunk, hyper=hyper or {}, dtype=dtype, device=device)
    names = problem.param_names
    ss = np.random.SeedSequence(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    n, i, start = 0, 0, time.perf_counter()
    cap = max_replicates or (R if precision is None else 64 * R)
    info: dict[str, Any] = {"chunk_replicates": chunk, "precision_capped": False}
    while True:
        child = int(ss.spawn(1)[0].generate_state(1, dtype=np.uint64)[0] >> np.uint64(2))
        out = _to_numpy(B, caller.run(child), names)
        for k in names:
            parts[k].append(out[k])
        n += chunk
        i += 1
        if n < R:
            continue
        if precision is None:
            break
        G = {k: np.concatenate(v)[: max(R, n)] for k, v in parts.items()}
        worst = max(summarize(G[k], problem.exact.grads[k]).get("variance_rel_halfwidth", 0.0) for k in names)
        if not worst > precision:  # also stops on NaN
            break
        if n >= cap or time.perf_counter() - start > max_seconds:
            info["precision_capped"] = True
            break
    total = n if precision is not None else R
    info["estimate_seconds"] = time.perf_counter() - start
    return {k: np.concatenate(v)[:total] for k, v in parts.items()}, info


def time_estimator(
    spec: EstimatorSpec,
    problem: Problem,
    *,
    L: int,
    hyper: dict[str, Any] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    cfg: TimingConfig | None = None,
) -> Timing:
    """Per-call time at R = 1 (as in training): compile separated, warm-up, device synchronized."""
    B = get_backend(spec.backend)
    caller = prepare(spec, problem, B, L=L, R=1, hyper=hyper or {}, dtype=dtype, device=device)
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
    tm = (
        timing.as_dict()
        if timing
        else {
            k: math.nan
            for k in (
                "time_median_s",
                "time_iqr_s",
                "compile_time_s",
                "time_samples",
                "time_inner_loops",
                "first_call_s",
            )
        }
    )
    rows = []
    for name in problem.param_names:
        m = summarize(G[name], ex.grads[name], rel_eps=float(np.finfo(cell.dtype).eps))
        row = {**base, "param": name, "n_replicates": int(G[name].shape[0]), **m, **tm}
        row["efficiency"] = m["variance"] * tm["time_median_s"]
        snr = m.get("snr", math.nan)
        row["samples_to_snr1"] = cell.n_samples / snr**2 if snr and snr > 0 and math.isfinite(snr) else math.nan
        row["precision_capped"] = bool(info.get("precision_capped", False))
        row["estimate_seconds"] = info.get("estimate_seconds", math.nan)
        rows.append(row)
    return rows


def run_cell(cell: Cell) -> CellOutcome:
    """Measure one cell.  Never raises for estimator errors: they become a ``failed`` outcome."""
    t0 = time.perf_counter()
    B = get_backend(cell.backend)
    reason = B.device_error(cell.device)
    if reason:
        return CellOutcome(cell, "skipped", message=reason)
    try:
        spec = get_estimator(cell.estimator, cell.backend)
        problem = cell.problem.build()
        opts = cell.options
        G, info = estimate(
            spec,
            problem,
            L=cell.n_samples,
            R=cell.n_replicates,
            seed=cell.cell_seed(),
            hyper=cell.hyper,
            dtype=cell.dtype,
            device=cell.device,
            max_memory=int(opts.get("max_memory", DEFAULT_MAX_MEMORY)),
            precision=opts.get("precision"),
            max_replicates=opts.get("max_replicates"),
            max_seconds=float(opts.get("max_seconds", 60.0)),
        )
        timing = None
        if cell.timing:
            cfg = TimingConfig(max_time_s=float(opts.get("timing_max_s", 0.5)))
            timing = time_estimator(
                spec, problem, L=cell.n_samples, hyper=cell.hyper, dtype=cell.dtype, device=cell.device, cfg=cfg
            )
        rows = cell_rows(cell, spec, problem, G, info, timing)
    except Exception as exc:  # one broken cell never stops a run
        msg = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return CellOutcome(cell, "failed", message=msg, seconds=time.perf_counter() - t0)
    return CellOutcome(cell, "ok", rows=rows, seconds=time.perf_counter() - t0)
