"""Size limits for training, checked before anything is allocated: memory per unit, steps, estimated time.

A training suite (and a workload suite's checkpoints, which are trained by the same loop) stops with the
estimate and the limit unless ``--yes`` is given, like a suite over its cell limits (:mod:`harness.suite.limits`):

* **memory** of one unit, from the model's weight shapes (:meth:`Workload.param_shapes`, arithmetic for the shipped
  models) and the step's sample arrays: ``itemsize × (WEIGHT_COPIES · P + ACTIVATION_COPIES · N · L · width)`` with
  P weights, N the batch, L = ``n_samples`` and width = latent elements + observed features + hidden units; over
  :data:`MAX_UNIT_BYTES` it is refused;
* **time** of the whole suite: ``steps × (STEP_OVERHEAD_S + SECONDS_PER_ELEMENT · N · L · width)`` per unit plus
  the held-out evaluations; over :data:`MAX_ESTIMATE_H` hours it is refused (``steps = 1e13`` is refused in
  milliseconds, not run forever);
* the **checkpoints** of a workload suite: the steps to train to the last checkpoint, by the same model.

The time model's constants come from docs/notes/training.md's measured CPU rates (DisARM, D = 16, batch 32, L = 2:
372 steps/s, i.e. ~2.7 ms; D = 200, 200 hidden units, batch 100: 39 steps/s, ~26 ms); it is an order of magnitude,
meant to stop runaway requests, not to plan a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_UNIT_BYTES = 4 * 2**30  # one unit's working memory
MAX_ESTIMATE_H = 24.0
STEP_OVERHEAD_S = 2.5e-3
SECONDS_PER_ELEMENT = 250e-9
WEIGHT_COPIES = 6  # weights, gradients, two optimizer moments, two online-variance EMAs
ACTIVATION_COPIES = 32  # sample arrays, relaxations, autograd intermediates of one step
ITEMSIZE = {"float64": 8, "float32": 4}


class LimitError(ValueError):
    """A request over a size limit: ``key`` names what to change; the message gives the estimate and the limit."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def widths(wl: Any, cfg: Mapping[str, Any]) -> tuple[int, int]:
    """(weights P, per-sample width: latent elements + observed features + hidden units), nothing allocated."""
    P = sum(math.prod(s) for s in wl.param_shapes(cfg).values())
    latent = math.prod(wl.latent_shape(cfg))
    train = wl.dataset(cfg)["train"]
    observed = sum(math.prod(v.shape[1:]) for v in train.values())
    hidden = cfg.get("hidden", 0) if isinstance(cfg.get("hidden", 0), int) else 0
    return int(P), int(latent + observed + hidden)


def unit_bytes(P: int, width: int, N: int, L: int, dtype: str) -> float:
    return float(ITEMSIZE.get(dtype, 8)) * (WEIGHT_COPIES * P + ACTIVATION_COPIES * float(N) * L * width)


def step_seconds(width: int, N: int, L: int) -> float:
    return STEP_OVERHEAD_S + SECONDS_PER_ELEMENT * float(N) * L * width


def unit_seconds(unit: Mapping[str, Any], width: int, n_val: int, n_test: int) -> float:
    """Estimated seconds of one training unit: its steps and its held-out evaluations."""
    steps = float(unit["steps"])
    train = steps * step_seconds(width, unit["batch_size"], unit["n_samples"])
    rows = steps / unit["log_every"] + 1
    val = rows * (unit["val_size"] or n_val) * unit["val_samples"] * width * SECONDS_PER_ELEMENT
    test = (unit["test_size"] or n_test) * (unit["test_samples"] + 1) * width * SECONDS_PER_ELEMENT
    return train + val + test


def fmt_bytes(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB" if b < 2**40 else f"{b / 2**40:,.1f} TiB"


def fmt_time(s: float) -> str:
    if s >= 3600 * 24 * 365:
        return f"{s / (3600 * 24 * 365):,.3g} years"
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min"


def check_unit_memory(key: str, wl: Any, cfg: Mapping[str, Any], N: int, L: int, dtype: str, confirmed: bool) -> None:
    """LimitError when one unit of this model, batch and L would need more than MAX_UNIT_BYTES."""
    if confirmed:
        return
    P, width = widths(wl, cfg)
    need = unit_bytes(P, width, N, L, dtype)
    if need > MAX_UNIT_BYTES:
        raise LimitError(
            key,
            f"one training unit of {wl.name} needs about {fmt_bytes(need)} ({P:,} weights; batch {N} x n_samples {L} "
            f"x {width:,} values per sample), over the limit of {fmt_bytes(MAX_UNIT_BYTES)}; nothing was allocated: "
            "shrink the model, batch_size or n_samples, or confirm with --yes",
        )


def check_time(key: str, seconds: float, what: str, confirmed: bool) -> None:
    """LimitError when the estimate exceeds MAX_ESTIMATE_H hours."""
    if confirmed or seconds <= MAX_ESTIMATE_H * 3600:
        return
    raise LimitError(
        key,
        f"{what} is estimated at {fmt_time(seconds)} of training, over {MAX_ESTIMATE_H:g} h; nothing was run: "
        "reduce steps (or checkpoints), or confirm with --yes",
    )


def check_checkpoint(wl: Any, cfg: Mapping[str, Any], step: int, confirmed: bool, key: str = "checkpoints") -> None:
    """Training a workload's checkpoint chain to ``step`` stays within the memory and time limits."""
    if confirmed:
        return
    P, width = widths(wl, cfg)
    N, L = int(cfg.get("train_batch", 32)), int(cfg.get("train_samples", 1))
    check_unit_memory(key, wl, cfg, N, L, "float64", confirmed)
    check_time(key, float(step) * step_seconds(width, N, L), f"checkpoint {step:,} of {wl.name}", confirmed)
