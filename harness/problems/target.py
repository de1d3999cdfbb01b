"""The target protocol: what an estimator is measured on (a problem, a workload at a checkpoint, ...) and its traits.

A **target** is a frozen, JSON-serializable description that a Cell carries (:class:`Target`): it names itself
(``to_dict``, ``label``), declares its :class:`Traits` (what the registry's one capability matcher,
:func:`harness.registry.applies`, reads) and ``build()``\\ s the object the runner measures (:class:`Built`):
the distribution's parameter values, the objective, the truth (``exact``), and how one estimate is assembled —
which estimator calls make it (:meth:`Built.parts`), how their outputs join (:meth:`Built.gather`) and which
gradients the rows report (:meth:`Built.readouts`: a problem reports its parameters; a workload its η-gradient
and, through the encoder chain rule, its encoder-weight gradient).  The runner knows nothing else about a target,
so a new kind of target (a user's model) needs no new pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Traits:
    """What a target offers an estimator (read by :func:`harness.registry.applies`).

    Attributes:
        name: how reasons name the target's objective (``"quadratic"``, ``"vae_bernoulli"``).
        latent: the distribution of z (a :data:`harness.problems.DISTRIBUTIONS` name).
        differentiable: f is differentiable in z.
        separable: f is a sum over sites (per-site cost g).
        multi_sample_bound: the target measures the gradient of a K-sample importance-weighted bound (K = L).
        exact_value: E[f] is known exactly enough for oracle baselines to use it.
        backends: backends the target can be measured on.
        grad_backends: backends on which ∂f/∂z is available (autodiff, or an analytic derivative).
        backend_notes: why a backend is missing from ``backends`` (a reason for the user), by backend.
    """

    name: str
    latent: str
    differentiable: bool = True
    separable: bool = True
    multi_sample_bound: bool = False
    exact_value: bool = True
    backends: tuple[str, ...] = ("numpy", "torch", "jax")
    grad_backends: tuple[str, ...] = ("numpy", "torch", "jax")
    backend_notes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """One estimator call of an estimate: a problem-like object (what the Context is built from) and its seed."""

    problem: Any
    seed: int


@dataclass
class Readout:
    """One group of rows of a cell: estimates, their truth, and what the target adds to the rows.

    Attributes:
        G: ``{param: array [R, *shape]}`` — the reported gradients (one row each).
        exact: their truth (an :class:`harness.problems.exact.ExactResult` whose ``grads`` hold ``G``'s names;
            ``extra["se"]`` per parameter when the truth is itself an estimate).
        columns: extra columns of these rows (e.g. ``workload``, ``checkpoint``).
        totals: also report ``n_coords`` and ``variance_total`` (the trace: variance × n_coords).
        post: the post-processing of one replicate that turns estimates into ``G`` (e.g. the encoder chain
            rule), timed into the rows' per-call time; None when there is none.
    """

    G: dict[str, np.ndarray]
    exact: Any
    columns: dict[str, Any] = field(default_factory=dict)
    totals: bool = False
    post: Callable[[], Any] | None = None


class Built(Protocol):
    """What the runner measures (a built target): the Context's problem plus the estimate's assembly."""

    spec: Any
    dist: Any
    objective: Any
    dim: int
    params_np: dict[str, np.ndarray]
    op: dict[str, Any]
    adaptive: bool  # replicates may be added until a precision target is met (all parts share one R otherwise)

    @property
    def param_names(self) -> list[str]: ...

    @property
    def event_shape(self) -> tuple[int, ...]: ...

    @property
    def exact(self) -> Any: ...

    def label(self) -> str: ...

    def describe(self) -> dict[str, Any]:
        """Identity columns of the rows: distribution, objective, dim, problem (the label)."""
        ...

    def parameter_columns(self) -> dict[str, Any]:
        """Problem-parameter columns of the rows (``p_*``, ``o_*``: values, scalars where constant), if any."""
        ...

    def parts(self, seed: int) -> list[Part]:
        """The estimator calls of one estimate and their seeds (``seed``: the cell's)."""
        ...

    def gather(self, estimates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The target's estimates ``{param: [R, *shape]}`` from its parts' (in :meth:`parts` order)."""
        ...

    def readouts(self, G: dict[str, np.ndarray], backend: str) -> list[Readout]:
        """The rows' gradients and truths from the gathered estimates (made on ``backend``, where any
        post-processing runs)."""
        ...


class Target(Protocol):
    """What a Cell carries: a serializable description of what to measure on."""

    def to_dict(self) -> dict[str, Any]: ...

    def label(self) -> str: ...

    def traits(self) -> Traits: ...

    def fields(self) -> dict[str, Any]:
        """Identity fields a suite's ``[[exclude]]`` tables match (distribution, objective, dim, ...)."""
        ...

    def build(self) -> Built: ...


def part_seed(seed: int, i: int) -> int:
    """The seed of part ``i`` of an estimate split into independently seeded parts (a non-negative int63)."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(2))
