"""Offline measurement at a training unit's saved state: the runner's estimates on its workload target.

:func:`offline_encoder_grads` loads a unit's saved weights, builds the workload target of its fixed training
batch (``split = "train"``, ``batch_seed`` = the unit's seed: the batch a ``fixed_batch`` unit trains on) at
those weights (:func:`harness.targets.workload.workload_problem_at`: the spec names the weights by digest),
estimates its η-gradient with :func:`harness.measure.runner.estimate_target` (each example its own
part, as a workload cell) and chains it to the encoder weights (:func:`harness.workloads.chain.encoder_grads`),
divided by N as in a training step.  Its per-coordinate variance is what the online EMA variance estimates when
the model does not move (lr → 0) and the batch is fixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.measure.runner import MeasureRequest, estimate_target
from harness.registry import get_estimator
from harness.targets.workload import WorkloadProblem, WorkloadSpec, workload_problem_at
from harness.training.state import read_state
from harness.workloads.chain import encoder_grads, flat


def workload_problem(unit: dict[str, Any], state: dict[str, np.ndarray]) -> WorkloadProblem:
    """The workload target of ``unit``'s fixed training batch at model ``state`` (NumPy weights; its label names
    the unit's last step)."""
    spec = WorkloadSpec(
        unit["workload"],
        unit["config"],
        checkpoint=int(unit["steps"]),
        split="train",
        batch_size=int(unit["batch_size"]),
        batch_seed=int(unit["seed"]),
    )
    return workload_problem_at(spec, state)


def saved_weights(state_path: str | Path) -> dict[str, np.ndarray]:
    """The model weights of a unit's saved state file."""
    got = read_state(Path(state_path))
    if got is None:
        raise FileNotFoundError(f"{state_path}: no saved training state")
    return {k[2:]: v for k, v in got[0].items() if k.startswith("p/")}


def offline_encoder_grads(unit: dict[str, Any], state: dict[str, np.ndarray], R: int, seed: int) -> np.ndarray:
    """[R, C]: R independent training-step encoder gradients (batch mean) at ``state``, via the runner."""
    problem = workload_problem(unit, state)
    spec = get_estimator(unit["estimator"], unit["backend"])
    req = MeasureRequest(
        spec, problem, L=int(unit["n_samples"]), R=R, seed=seed, hyper=unit["hyper"], dtype=unit["dtype"]
    )
    G, _ = estimate_target(req, problem)
    enc = encoder_grads(problem, G, unit["backend"])
    return flat(enc, list(problem.encoder_params)) / problem.n
