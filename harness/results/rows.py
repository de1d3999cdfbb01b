"""Row assembly: a cell's outcome and its tidy rows (one per reported parameter), metrics by harness.stats."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from harness.results.schema import BIAS_COLUMNS
from harness.stats.metrics import bias_test, coordinate_mean_se, efficiency_interval, summarize


class CellLike(Protocol):
    def key(self) -> str: ...
    def label(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class CellOutcome:
    """What measuring one cell produced: status ok | skipped | failed, its rows or the reason."""

    cell: CellLike
    status: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0


def scalar_or_nan(v: Any) -> float:
    """The value when it is one scalar (or constant across coordinates), else NaN."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return math.nan
    return float(a.ravel()[0]) if a.size and np.all(a == a.ravel()[0]) else math.nan


def cell_rows(
    identity: Mapping[str, Any],
    exact: Any,
    G: Mapping[str, np.ndarray],
    info: Mapping[str, Any],
    timing: Mapping[str, Any],
    *,
    dtype: str,
    n_samples: int,
    threads: int,
    totals: bool = False,
) -> list[dict[str, Any]]:
    """Tidy rows, one per parameter: ``identity`` columns, metrics with CIs, bias test, timing, efficiency.

    ``exact`` has ``grads`` (per parameter), ``method``, ``abs_err``, ``value``; ``G`` holds the replicate
    estimates [R, *shape]; ``info`` the precision loop's facts and the counted evaluations per estimate
    (``f_evals``, ``grad_evals``, ``aux_evals``: the cost columns); ``timing`` the timing columns (NaN when untimed).
    ``totals`` adds ``n_coords`` and the total variance (the trace, variance × n_coords) with its interval.  A truth
    that is itself an estimate carries per-parameter standard errors in ``exact.extra["se"]``; its rows add
    ``truth_se_max``, ``bias_z_truth`` (largest |mean − truth| / √(SE_est² + SE_truth²)) and
    ``truth_too_imprecise`` (the truth's median SE exceeds the estimate's: no bias verdict).
    """
    eps = float(np.finfo(dtype).eps)
    base = {
        **identity,
        "exact_method": exact.method,
        "exact_abs_err": float(exact.abs_err),
        "exact_value": float(exact.value),
    }
    metrics = {name: summarize(G[name], exact.grads[name], rel_eps=eps) for name in G}
    rel = [m["variance_rel_halfwidth"] for m in metrics.values()]
    run = {
        "precision_target": info.get("precision_target", math.nan),
        "precision_achieved": math.nan if any(not math.isfinite(r) for r in rel) else max(rel, default=math.nan),
        "precision_capped": bool(info.get("precision_capped", False)),
        "precision_cap_reason": info.get("precision_cap_reason", ""),
        "n_chunks": int(info.get("n_chunks", 0)),
        "chunk_replicates": int(info.get("chunk_replicates", 0)),
        "estimate_seconds": info.get("estimate_seconds", math.nan),
        "threads": int(threads),
    }
    rows = []
    for name, m in metrics.items():
        g = np.asarray(G[name], dtype=np.float64).reshape(G[name].shape[0], -1)
        finite = np.isfinite(g).all(axis=1)
        if not finite.all():  # a copy only when some replicate is dropped
            g = g[finite]
        bt = bias_test(g, exact.grads[name], rel_eps=eps) if g.shape[0] >= 4 else dict.fromkeys(BIAS_COLUMNS, math.nan)
        row = {**base, "param": name, "n_replicates": int(G[name].shape[0]), **m, **bt, **timing, **run}
        eff, lo, hi = efficiency_interval(
            m["variance"],
            m["variance_ci_low"],
            m["variance_ci_high"],
            timing.get("time_median_s", math.nan),
            timing.get("time_iqr_s", math.nan),
            timing.get("time_samples", math.nan),
        )
        row["efficiency"], row["efficiency_ci_low"], row["efficiency_ci_high"] = float(eff), float(lo), float(hi)
        row.update(cost_columns(info, m["variance"], m["variance_ci_low"], m["variance_ci_high"]))
        snr = m.get("snr", math.nan)
        row["samples_to_snr1"] = n_samples / snr**2 if snr and snr > 0 and math.isfinite(snr) else math.nan
        if totals:
            C = int(np.prod(G[name].shape[1:]))
            row.update(
                n_coords=C,
                variance_total=row["variance"] * C,
                variance_total_ci_low=row["variance_ci_low"] * C,
                variance_total_ci_high=row["variance_ci_high"] * C,
            )
        se = getattr(exact, "extra", {}).get("se", {})
        if name in se:
            row.update(_truth_columns(g, exact.grads[name], se[name]))
        rows.append(row)
    return rows


def cost_columns(info: Mapping[str, Any], variance: float, low: float, high: float) -> dict[str, float]:
    """The cost columns: counted evaluations per L-sample estimate (from the runner's ``info``; NaN when absent)
    and the variance at equal evaluations with its interval (the variance interval scaled by the exact count)."""
    f, g, a = (float(info.get(k, math.nan)) for k in ("f_evals", "grad_evals", "aux_evals"))
    evals = f + g
    vpe, lo, hi = efficiency_interval(variance, low, high, evals, 0.0, 1)  # an exact cost: no time error term
    return {
        "f_evals": f,
        "grad_evals": g,
        "aux_evals": a,
        "evals": evals,
        "variance_per_eval": float(vpe),
        "variance_per_eval_ci_low": float(lo),
        "variance_per_eval_ci_high": float(hi),
    }


def _truth_columns(G: np.ndarray, exact: np.ndarray, truth_se: np.ndarray) -> dict[str, Any]:
    """Bias against a truth with its own standard errors (per coordinate), from the finite replicates G [R, C]."""
    e, s = np.asarray(exact, np.float64).ravel(), np.asarray(truth_se, np.float64).ravel()
    mean, se_est = coordinate_mean_se(G)
    z = np.abs(mean - e) / np.sqrt(se_est**2 + s**2 + 1e-300)
    return {
        "truth_se_max": float(s.max()) if s.size else 0.0,
        "bias_z_truth": float(z.max()),
        "truth_too_imprecise": bool(np.median(s) > np.median(se_est)),
    }
