"""Offline measurement at a training unit's saved state: the runner's estimates on the workload problem (tests, notes).

:func:`offline_encoder_grads` loads a unit's saved weights, builds the workload problem of its fixed training batch
at those weights (:func:`harness.workloads.base.workload_problem_at`: ``split = "train"``, ``batch_seed`` = the unit's
seed, the batch a ``fixed_batch`` unit trains on), estimates every example's η-gradient with
:func:`harness.measure.runner.estimate` (each example its own f_b) and chains them to the encoder weights
(:func:`harness.workloads.chain.encoder_grads`), divided by N as in a training step.  Its per-coordinate variance is
what the online EMA variance estimates when the model does not move (lr → 0) and the batch is fixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def workload_problem(unit: dict[str, Any], state: dict[str, np.ndarray]) -> Any:
    """The workload problem of ``unit``'s fixed training batch at model ``state`` (NumPy weights)."""
    from harness.workloads import WorkloadSpec
    from harness.workloads.base import workload_problem_at

    spec = WorkloadSpec(
        unit["workload"],
        unit["config"],
        split="train",
        batch_size=int(unit["batch_size"]),
        batch_seed=int(unit["seed"]),
    )
    return workload_problem_at(spec, state)


def saved_weights(state_path: str | Path) -> dict[str, np.ndarray]:
    from harness.training.state import read_state

    got = read_state(Path(state_path))
    if got is None:
        raise FileNotFoundError(f"{state_path}: no saved training state")
    return {k[2:]: v for k, v in got[0].items() if k.startswith("p/")}


def offline_encoder_grads(unit: dict[str, Any], state: dict[str, np.ndarray], R: int, seed: int) -> np.ndarray:
    """[R, C]: R independent training-step encoder gradients (batch mean) at ``state``, via harness.measure.runner."""
    from harness.measure.runner import MeasureRequest, estimate
    from harness.registry import get_estimator
    from harness.workloads.chain import encoder_grads, flat

    problem = workload_problem(unit, state)
    spec = get_estimator(unit["estimator"], unit["backend"])
    parts = []
    for i, sub in enumerate(problem.examples()):
        req = MeasureRequest(
            spec, sub, L=int(unit["n_samples"]), R=R, seed=seed * 7919 + i, hyper=unit["hyper"], dtype=unit["dtype"]
        )
        parts.append(estimate(req)[0])
    G = {k: np.concatenate([p[k] for p in parts], axis=1) for k in problem.param_names}
    enc = encoder_grads(problem, G, unit["backend"])
    return flat(enc, list(problem.encoder_params)) / problem.n
