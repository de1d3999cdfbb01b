"""Measure an estimator on a workload cell: η-gradient and encoder-gradient rows.

Fairness (the design choice): the batch objective is a sum over examples, f = Σ_b f_b.  An estimator that
weights scores by the *total* f (score function, ARM/DisARM, RLOO, ...) would pick up the other examples'
noise, which the published comparisons (DisARM, RODEO) avoid by estimating each example's gradient with its
own f_b.  So, by default (``WorkloadSpec.per_example = True``), each example of the batch is its own problem:
the estimator is called once per example (each call vectorized over the R replicates) and the N results are
concatenated.  Timing consequence: the per-call time (R = 1) is that of the N calls in sequence, so it
includes N call overheads — what a training step using that estimator this way would pay.
``per_example = False`` measures the batch objective as one problem (one call; the extra variance is then
part of the measurement).

Rows (via ``harness.results.cell_rows``, so every usual column is there): param ``eta`` (all η coordinates of
the batch, flattened) and param ``encoder`` (the chain-ruled encoder-weight gradient), plus ``workload``,
``checkpoint``, ``n_coords``, ``variance_total`` (the trace: Σ over coordinates = variance × n_coords) with its
CI, and the truth's own uncertainty: ``truth_se_max``, ``bias_z_truth`` (largest |bias| / √(SE_est² +
SE_truth²)) and ``truth_too_imprecise`` (the truth's median SE exceeds the estimate's: no bias verdict).
Fixed R: the precision loop does not apply to workload cells (``precision_target`` is NaN).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from harness.workloads.chain import encoder_grads, flat, jacobian


def applies(spec: Any, wspec: Any) -> tuple[bool, str]:
    """Can estimator implementation ``spec`` run on workload ``wspec``?  (ok, reason if not)."""
    from harness.workloads import get_workload

    wl = get_workload(wspec.workload)
    if spec.backend not in wl.backends:
        return False, f"{wl.name} runs on {list(wl.backends)} only"
    if not spec.applies_to(wl.latent):
        return False, f"{spec.name} does not apply to {wl.latent}"
    if "differentiable" in spec.requires and not wl.differentiable:
        return False, f"{spec.name} needs a differentiable objective ({wl.name} is not)"
    if "multi_sample_bound" in spec.requires:
        return False, f"{spec.name} estimates a multi-sample bound's gradient (workload cells measure the ELBO's)"
    if "separable" in spec.requires:
        return False, f"{spec.name} needs a separable objective (workload objectives are not)"
    if spec.backend == "numpy":
        if "differentiable" in spec.requires and not wl.numpy_grad:
            return False, f"{spec.name} on numpy needs an analytic ∂f/∂z ({wl.name} has none)"
        if not wl.numpy_vjp:
            return False, f"numpy has no encoder chain rule for {wl.name}"
    return True, ""


def _seed(cell_seed: int, i: int) -> int:
    return int(np.random.SeedSequence([cell_seed, i]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(2))


def estimate_eta(cell: Any, spec: Any, problem: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """R replicate η-gradients of the batch [R, *param shape], per example or as one problem."""
    from harness.measure.runner import estimate, request_for

    subs = problem.examples() if problem.spec.per_example else [problem]
    parts, seconds, chunks = [], 0.0, 0
    for i, sub in enumerate(subs):
        req = request_for(cell, spec, sub).with_(seed=_seed(cell.cell_seed(), i), precision=None)
        G, info = estimate(req)
        parts.append(G)
        seconds += info["estimate_seconds"]
        chunks += info["n_chunks"]
    G = {k: np.concatenate([p[k] for p in parts], axis=1) for k in problem.param_names}
    info = {"estimate_seconds": seconds, "n_chunks": chunks, "chunk_replicates": cell.n_replicates}
    return G, info


def time_eta(cell: Any, spec: Any, problem: Any) -> Any:
    """Per-call time (R = 1) of one batch gradient: the per-example calls in sequence."""
    from harness.backends import get_backend
    from harness.measure.runner import prepare, request_for
    from harness.measure.timing import TimingConfig, time_call

    B = get_backend(spec.backend)
    subs = problem.examples() if problem.spec.per_example else [problem]
    callers = [prepare(request_for(cell, spec, s), 1, cache=False) for s in subs]
    cfg = TimingConfig(max_time_s=float(cell.options.get("timing_max_s") or 0.5))
    return time_call(lambda: [c.timed() for c in callers], B.sync, cfg)


def _truth_columns(G: np.ndarray, exact: np.ndarray, truth_se: np.ndarray) -> dict[str, Any]:
    R = G.shape[0]
    se_est = G.std(0, ddof=1) / math.sqrt(R)
    diff = np.abs(G.mean(0) - exact)
    z = diff / np.sqrt(se_est**2 + truth_se**2 + 1e-300)
    return {
        "truth_se_max": float(truth_se.max()) if truth_se.size else 0.0,
        "bias_z_truth": float(z.max()),
        "truth_too_imprecise": bool(np.median(truth_se) > np.median(se_est)),
    }


def workload_rows(cell: Any, spec: Any, problem: Any, G: dict[str, np.ndarray], info: dict, timing: Any) -> list[dict]:
    """Rows for params ``eta`` and ``encoder`` (see the module docstring)."""
    from harness.measure.runner import identity_columns
    from harness.measure.timing import Timing, TimingConfig, thread_settings, time_call
    from harness.problems.exact import ExactResult
    from harness.results import cell_rows

    names, enc = problem.param_names, list(problem.encoder_params)
    ex = problem.exact
    G_eta = flat(G, names)
    e_eta = np.concatenate([ex.grads[k].ravel() for k in names])
    G_enc = flat(encoder_grads(problem, G, cell.backend), enc)
    e_enc = flat(encoder_grads(problem, {k: ex.grads[k][None] for k in names}, cell.backend), enc)[0]
    se = ex.extra.get("se", {})
    se_eta = np.concatenate([np.asarray(se.get(k, np.zeros_like(ex.grads[k]))).ravel() for k in names])
    se_enc = np.sqrt(jacobian(problem).T ** 2 @ se_eta**2) if se_eta.any() else np.zeros_like(e_enc)
    ident = {k: v for k, v in identity_columns(cell, spec, problem).items() if not k.startswith(("p_", "o_"))}
    rows = []
    for name, g, e, s in (("eta", G_eta, e_eta, se_eta), ("encoder", G_enc, e_enc, se_enc)):
        tm = timing
        if name == "encoder" and timing is not None:
            one = {k: G[k][:1] for k in names}
            cfg = TimingConfig(max_time_s=float(cell.options.get("timing_max_s") or 0.5))
            t_vjp = time_call(lambda: encoder_grads(problem, one, cell.backend), lambda _: None, cfg).time_median_s
            tm = dataclasses.replace(timing, time_median_s=timing.time_median_s + t_vjp)
        exact = ExactResult(ex.value, {name: e}, ex.method, ex.abs_err)
        (row,) = cell_rows(
            ident,
            exact,
            {name: g},
            info,
            tm.as_dict() if tm is not None else Timing.empty(),
            dtype=cell.dtype,
            n_samples=cell.n_samples,
            threads=int(thread_settings()["threads"]),
        )
        C = g.shape[1]
        row.update(
            workload=problem.workload.name,
            workload_config=json.dumps(dict(problem.spec.config), sort_keys=True),
            checkpoint=problem.spec.checkpoint,
            n_coords=C,
            variance_total=row["variance"] * C,
            variance_total_ci_low=row["variance_ci_low"] * C,
            variance_total_ci_high=row["variance_ci_high"] * C,
            per_example=problem.spec.per_example,
            **_truth_columns(g, e, s),
        )
        rows.append(row)
    return rows


def run_workload_cell(cell: Any, spec: Any) -> list[dict]:
    """Build the workload problem, estimate, time and return its rows (raises on errors, like run_cell's body)."""
    problem = cell.problem.build()
    G, info = estimate_eta(cell, spec, problem)
    timing = time_eta(cell, spec, problem) if cell.timing else None
    return workload_rows(cell, spec, problem, G, info, timing)
