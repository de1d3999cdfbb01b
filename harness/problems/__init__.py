"""Problems = distribution (with parameter values) × objective × dimension, with exact ground truth.

:class:`ProblemSpec` is a target (:class:`harness.problems.target.Target`) and :class:`Problem` the object the
runner measures: one estimator call per estimate, one row per distribution parameter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from harness.backends import AUTODIFF_BACKENDS, BACKEND_NAMES
from harness.problems.base import CONSTRAINTS, Distribution, Objective, ParamSpec, ProblemShape
from harness.problems.dists import discover
from harness.problems.exact import ExactResult, compute_exact
from harness.problems.objectives import OBJECTIVES, resolve_objective_params
from harness.problems.target import Part, Readout, Traits

DISTRIBUTIONS: dict[str, Distribution] = discover()
_EXACT_CACHE: dict[str, ExactResult] = {}


class ProblemError(ValueError):
    """Invalid problem specification; ``key`` names the offending field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def get_distribution(name: str) -> Distribution:
    if name not in DISTRIBUTIONS:
        raise ProblemError("distribution", f"unknown distribution {name!r}; valid: {sorted(DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name]


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ProblemError("objective", f"unknown objective {name!r}; valid: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def objectives_for(dist: Distribution) -> list[str]:
    return sorted(n for n, o in OBJECTIVES.items() if dist.support in o.supports)


def jsonable(v: Any) -> Any:
    """Arrays, tuples and mappings as JSON-ready lists and dicts (specs are serialized with it)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


@dataclass(frozen=True)
class ProblemSpec:
    """Serializable description of a problem (what a suite file and a Cell carry)."""

    distribution: str
    objective: str
    dim: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)
    objective_params: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "distribution": self.distribution,
            "objective": self.objective,
            "dim": self.dim,
            "params": {k: jsonable(v) for k, v in self.params.items()},
            "objective_params": {k: jsonable(v) for k, v in self.objective_params.items()},
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProblemSpec:
        return cls(
            **{k: d[k] for k in ("distribution", "objective", "dim", "params", "objective_params", "options") if k in d}
        )

    def build(self) -> Problem:
        return Problem(self)

    def label(self) -> str:
        ps = ",".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.distribution}({ps})/{self.objective}/D={self.dim}"

    def traits(self) -> Traits:
        """The objective's declared traits on this distribution (analytic ∂f/∂z: numpy differentiates too)."""
        obj = get_objective(self.objective)
        return Traits(
            name=self.objective,
            latent=self.distribution,
            differentiable=obj.differentiable,
            separable=obj.separable,
            multi_sample_bound=obj.multi_sample_bound,
            exact_value=True,
            backends=BACKEND_NAMES,
            grad_backends=BACKEND_NAMES if obj.grad_np is not None else AUTODIFF_BACKENDS,
        )

    def fields(self) -> dict[str, Any]:
        return {"distribution": self.distribution, "objective": self.objective, "dim": self.dim}


def _short(v: Any) -> str:
    if isinstance(v, list | tuple | np.ndarray):
        flat = np.asarray(v, dtype=float).ravel()
        return "[" + ",".join(f"{x:g}" for x in flat[:4]) + (",…" if flat.size > 4 else "") + "]"
    return f"{v:g}" if isinstance(v, float | int) else str(v)


def _read_only(arrays: dict[str, Any]) -> dict[str, Any]:
    """The dict's NumPy arrays marked read-only (in place): a problem's parameters, objective parameters and exact
    gradient are shared by every cell on it, so an estimator's in-place write must fail, not corrupt them."""
    for v in arrays.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return arrays


class Problem(ProblemShape):
    """A validated problem: NumPy float64 parameter arrays, resolved objective params, exact gradient."""

    def __init__(self, spec: ProblemSpec) -> None:
        self.spec = spec
        self.dist = get_distribution(spec.distribution)
        self.objective = get_objective(spec.objective)
        if self.dist.support not in self.objective.supports:
            raise ProblemError(
                "objective",
                f"objective {spec.objective!r} does not apply to {spec.distribution} (support "
                f"{self.dist.support}); valid: {objectives_for(self.dist)}",
            )
        if not isinstance(spec.dim, int) or isinstance(spec.dim, bool) or spec.dim < 1:
            raise ProblemError("dim", f"must be a positive integer, got {spec.dim!r}")
        self.dim = spec.dim
        self.options = self._options(spec.options)
        self.params_np = _read_only(self._params(spec.params))
        unknown = set(spec.objective_params) - set(self.objective.params)
        if unknown:
            raise ProblemError(
                "objective_params",
                f"unknown parameter(s) {sorted(unknown)} for objective {spec.objective!r}; "
                f"valid: {sorted(self.objective.params)}",
            )
        self._check_objective_params(spec.objective_params)
        self.op = _read_only(
            resolve_objective_params(spec.objective, spec.objective_params, self.dist.categories(self.options))
        )
        moment = self.dist.moment_conditions(self.params_np, spec.objective)
        if moment:
            key, msg = moment
            raise ProblemError(key, f"{msg} (E[f] or its gradient does not exist: {self.dist.name} x {spec.objective})")

    def _check_objective_params(self, given: Mapping[str, Any]) -> None:
        """Scalar objective parameters are finite real numbers; a vector one (target) has one finite value per
        category."""
        for k, v in given.items():
            key = f"objective_params.{k}"
            if self.objective.params[k] is None:  # a K-vector (categorical_target.target)
                K = self.dist.categories(self.options)
                try:
                    arr = np.asarray(v, dtype=np.float64)
                except (TypeError, ValueError):
                    raise ProblemError(key, f"must be a list of {K} numbers, got {v!r}") from None
                if arr.shape != (K,) or isinstance(v, bool) or not np.all(np.isfinite(arr)):
                    raise ProblemError(key, f"must be a list of {K} finite numbers (one per category), got {v!r}")
            elif not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise ProblemError(key, f"must be a finite real number, got {v!r}")

    def _options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(given) - set(self.dist.options)
        if unknown:
            raise ProblemError(
                "options",
                f"unknown option(s) {sorted(unknown)} for {self.dist.name}; valid: {sorted(self.dist.options)}",
            )
        opts = {**self.dist.options, **given}
        for k, v in opts.items():
            low = 2 if k == "categories" else 1  # one category is no distribution
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ProblemError(f"options.{k}", f"must be an integer >= {low}, got {v!r}")
        return opts

    def _params(self, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
        dist = self.dist
        valid = sorted(set(dist.params) | set(dist.aliases))
        out: dict[str, np.ndarray] = {}
        for raw_name, raw in given.items():
            if raw_name not in dist.params and raw_name not in dist.aliases:
                raise ProblemError(f"params.{raw_name}", f"unknown parameter for {dist.name}; valid: {valid}")
            try:
                arr = np.asarray(raw, dtype=np.float64)
            except (TypeError, ValueError):
                raise ProblemError(
                    f"params.{raw_name}", f"must be a number or a list of numbers, got {raw!r}"
                ) from None
            if raw_name in dist.aliases:
                ok, desc = CONSTRAINTS["unit_open"]
                if not ok(arr):
                    raise ProblemError(f"params.{raw_name}", f"must be {desc}, got {_short(raw)}")
            name, arr = dist.convert(raw_name, arr)
            if name in out:
                raise ProblemError(f"params.{raw_name}", f"{name} given twice (directly and via an alias)")
            out[name] = arr
        for name, ps in dist.params.items():
            arr = out.get(name, np.asarray(ps.default, dtype=np.float64))
            shape = dist.param_shape(name, self.dim, self.options)
            if ps.site_shape == "K" and arr.ndim == 1 and "categories" not in self.spec.options:
                # a K-vector given without the option fixes the number of categories
                if arr.shape[0] < 2:
                    raise ProblemError(f"params.{name}", f"needs at least 2 categories, got {arr.shape[0]}")
                self.options["categories"] = arr.shape[0]
                shape = dist.param_shape(name, self.dim, self.options)
            try:
                if ps.site_shape == "D" and arr.ndim <= 1:
                    # matrix parameter (mvn scale_tril): a scalar s means s·I, a [D] vector v means diag(v)
                    arr = np.diag(np.broadcast_to(arr, (self.dim,)))
                arr = np.broadcast_to(arr, shape).astype(np.float64)
            except ValueError:
                raise ProblemError(
                    f"params.{name}", f"shape {arr.shape} does not broadcast to {shape} (dim={self.dim})"
                ) from None
            ok, desc = CONSTRAINTS[ps.constraint]
            if not ok(arr):
                raise ProblemError(f"params.{name}", f"must be {desc} for {dist.name}, got {_short(arr)}")
            out[name] = arr
        msg = dist.validate(out)  # cross-parameter constraints (e.g. truncated_normal low < high)
        if msg:
            raise ProblemError("params", f"{dist.name}: {msg}")
        return out

    @cached_property
    def exact(self) -> ExactResult:
        """Exact ground truth, computed once per distinct problem per process."""
        key = json.dumps(self.spec.to_dict(), sort_keys=True, default=str)
        if key not in _EXACT_CACHE:
            ex = compute_exact(self)
            _read_only(ex.grads)
            _EXACT_CACHE[key] = ex
        return _EXACT_CACHE[key]

    def label(self) -> str:
        return self.spec.label()

    # -- what the runner measures (harness.problems.target.Built) -----------------------------
    adaptive = True  # one estimator call per estimate: replicates may be added for a precision target

    def describe(self) -> dict[str, Any]:
        return {
            "distribution": self.dist.name,
            "objective": self.objective.name,
            "dim": self.dim,
            "problem": self.label(),
        }

    def parameter_columns(self) -> dict[str, Any]:
        return {**{f"p_{k}": v for k, v in self.params_np.items()}, **{f"o_{k}": v for k, v in self.op.items()}}

    def parts(self, seed: int) -> list[Part]:
        return [Part(self, seed)]

    def gather(self, estimates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        (G,) = estimates
        return G

    def readouts(self, G: dict[str, np.ndarray], backend: str) -> list[Readout]:
        return [Readout(G, self.exact)]


__all__ = [
    "DISTRIBUTIONS",
    "OBJECTIVES",
    "Distribution",
    "ExactResult",
    "Objective",
    "ParamSpec",
    "Problem",
    "ProblemError",
    "ProblemSpec",
    "get_distribution",
    "get_objective",
    "objectives_for",
]


def example_problems(distribution: str | None = None) -> list[ProblemSpec]:
    """Every shipped example problem (each distribution file's ``examples``)."""
    out = []
    for name, dist in sorted(DISTRIBUTIONS.items()):
        if distribution is not None and name != distribution:
            continue
        for ex in dist.examples:
            out.append(
                ProblemSpec(
                    distribution=name,
                    objective=ex["objective"],
                    dim=int(ex.get("dim", 1)),
                    params=dict(ex.get("params", {})),
                    objective_params=dict(ex.get("objective_params", {})),
                    options=dict(ex.get("options", {})),
                )
            )
    return out
