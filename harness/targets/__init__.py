"""Targets built at a checkpoint: what a Cell measures, behind one protocol (:mod:`harness.problems.target`).

Two kinds ship: a problem (:class:`harness.problems.ProblemSpec`: a distribution × objective × D with exact
truth) and a workload target (:class:`harness.targets.workload.WorkloadSpec`: a model at a training checkpoint on
a batch).  :func:`target_from_dict` rebuilds either from its serialized form (a Cell's ``problem`` entry); a new
kind registers itself with :func:`register_target_kind` and needs nothing else from the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.problems import ProblemSpec
from harness.problems.target import Built, Part, Readout, Target, Traits
from harness.targets.workload import WorkloadProblem, WorkloadSpec, check_spec

# serialized form -> target: the first kind whose identifying key is in the dict (registration order)
_KINDS: dict[str, Callable[[Mapping[str, Any]], Target]] = {
    "workload": WorkloadSpec.from_dict,
    "distribution": ProblemSpec.from_dict,
}


def register_target_kind(key: str, from_dict: Callable[[Mapping[str, Any]], Target]) -> None:
    """Serialized targets holding ``key`` are rebuilt by ``from_dict`` (checked before the built-in kinds)."""
    items = [(key, from_dict), *((k, v) for k, v in _KINDS.items() if k != key)]
    _KINDS.clear()
    _KINDS.update(items)


def target_from_dict(d: Mapping[str, Any]) -> Target:
    """The target a serialized cell names."""
    for key, from_dict in _KINDS.items():
        if key in d:
            return from_dict(d)
    raise ValueError(f"not a serialized target (no key among {list(_KINDS)}): {sorted(d)}")


__all__ = [
    "Built",
    "Part",
    "ProblemSpec",
    "Readout",
    "Target",
    "Traits",
    "WorkloadProblem",
    "WorkloadSpec",
    "check_spec",
    "register_target_kind",
    "target_from_dict",
]
