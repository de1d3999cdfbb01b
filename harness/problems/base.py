"""Distribution and objective base classes.

Shapes: a sample has shape ``[R, L, *event]`` (R replicates, L samples); parameters passed to
``sample`` carry a leading replicate axis ``[R, *param_shape]``; ``align`` inserts the L axis so that
elementwise formulas broadcast.  A distribution is a product of D independent *sites* (coordinates,
or rows of K categories); separable objectives are sums over sites, which is what exact ground truth
by enumeration and 1-D quadrature uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any

CONSTRAINTS: dict[str, tuple[Callable[[np.ndarray], bool], str]] = {
    "real": (lambda v: bool(np.all(np.isfinite(v))), "a finite real number"),
    "positive": (lambda v: bool(np.all(np.isfinite(v) & (v > 0))), "> 0"),
    "unit_open": (lambda v: bool(np.all((v > 0) & (v < 1))), "in the open interval (0, 1)"),
}


@dataclass(frozen=True)
class ParamSpec:
    """A distribution parameter: its shape per site ('' scalar, 'K' per category) and constraint."""

    constraint: str = "real"
    default: Any = 0.0
    site_shape: str = ""  # "" -> param shape [D]; "K" -> [D, K]; "D" -> [D, D] (a matrix over coordinates)
    doc: str = ""
    # False: a fixed, non-differentiated parameter (e.g. truncation bounds): estimators and the exact
    # gradient cover only the differentiable ones (Problem.param_names)
    differentiable: bool = True


class Distribution:
    """Base class; subclasses live one per file in ``harness/problems/dists/``."""

    name: str = ""
    params: Mapping[str, ParamSpec] = {}
    support: str = "real"  # real | positive | binary | onehot | unit | simplex | circle
    discrete: bool = False
    options: Mapping[str, Any] = {}  # e.g. {"categories": 3}
    aliases: Mapping[str, str] = {}  # alternative input names, e.g. probs -> logits (see convert)
    # shipped problems (used by `stochgrad check`, the registry-driven tests and the default suite):
    # dicts with keys params, objective and optionally objective_params, dim, options
    examples: tuple[Mapping[str, Any], ...] = ()
    doc: str = ""

    # -- shapes -----------------------------------------------------------------------------
    def categories(self, opts: Mapping[str, Any]) -> int:
        return int(opts.get("categories", self.options.get("categories", 1)))

    def param_shape(self, name: str, dim: int, opts: Mapping[str, Any]) -> tuple[int, ...]:
        site = self.params[name].site_shape
        if site == "D":
            return (dim, dim)
        return (dim, self.categories(opts)) if site == "K" else (dim,)

    def event_shape(self, dim: int, opts: Mapping[str, Any]) -> tuple[int, ...]:
        return (dim,)

    def convert(self, name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
        """Map an alias input (e.g. probs) to a native parameter (e.g. logits)."""
        return name, value

    def validate(self, params: Mapping[str, np.ndarray]) -> str | None:
        """Cross-parameter checks after broadcasting (e.g. low < high): an error message, or None."""
        return None

    def moment_conditions(self, params: Mapping[str, np.ndarray], objective: str) -> tuple[str, str] | None:
        """Declared existence conditions of E[f] and its gradient for an objective: (key, message) when the
        parameters violate them (e.g. student_t x quadratic needs df > 2), else None.  Bounded objectives and
        distributions with every moment finite need none."""
        return None

    # -- sampling and densities (backend-generic; B is a harness.backends.Backend) -----------
    @staticmethod
    def align(P: Mapping[str, Array]) -> dict[str, Array]:
        """Insert the L axis after the replicate axis: [R, *s] -> [R, 1, *s]."""
        return {k: v[:, None] for k, v in P.items()}

    def sample(self, B: Any, noise: Any, P: Mapping[str, Array], L: int) -> Array:
        """Draws of shape [R, L, *event] without gradient attached."""
        raise NotImplementedError

    def logpdf_elem(self, B: Any, z: Array, Pa: Mapping[str, Array]) -> Array:
        """Per-site log density [..., D] (categories summed), with params aligned to z."""
        raise NotImplementedError

    def log_prob(self, B: Any, z: Array, P: Mapping[str, Array]) -> Array:
        """Joint log density [R, L] of samples z [R, L, *event] under batched params P [R, ...]."""
        return self.logpdf_elem(B, z, self.align(P)).sum(-1)

    def score_np(self, z: np.ndarray, Pa: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Analytic ∂/∂θ log p per site (NumPy), params aligned; shapes broadcast like Pa."""
        raise NotImplementedError

    # -- exact ground truth helpers (NumPy) ---------------------------------------------------
    def closed_form(self, objective: str) -> Callable[..., tuple[np.ndarray, dict[str, np.ndarray]]] | None:
        """Optional f(P, op) -> (per-site E[g], {param: ∂/∂param}) in closed form."""
        fn = getattr(self, f"exact_{objective}", None)
        return fn

    def site_support(self, p: Mapping[str, float]) -> tuple[float, float]:
        """Integration interval for 1-D quadrature at site parameters ``p``."""
        return {"real": (-math.inf, math.inf), "positive": (0.0, math.inf), "unit": (0.0, 1.0)}[self.support]

    def site_points(self, p: Mapping[str, float]) -> list[float]:
        """Points where the integrand may peak (help QUADPACK on infinite ranges)."""
        return []

    def support_values(self, opts: Mapping[str, Any]) -> list[np.ndarray]:
        """Discrete sites: the values one site can take (each broadcast over the D sites)."""
        raise NotImplementedError

    def enumerate_site(self, p: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Discrete sites: (values [V, *site_event], probs [V], {param: dprob/dparam [V, *pshape]})."""
        raise NotImplementedError


@dataclass(frozen=True)
class Objective:
    """A cost f(z) = sum over sites of g(z_site); written once for every backend."""

    name: str
    fn: Callable[..., Array]  # (B, z, op) -> per-site values [..., D]
    params: Mapping[str, Any]
    supports: frozenset[str]
    grad_np: Callable[..., np.ndarray] | None = None  # d g / d z elementwise (NumPy)
    hess_np: Callable[..., np.ndarray] | None = None  # d² g / d z² elementwise (NumPy)
    separable: bool = True
    differentiable: bool = True
    multi_sample_bound: bool = False  # f's estimate is a K-sample importance-weighted bound (K = L)
    doc: str = ""

    def per_site(self, B: Any, z: Array, op: Mapping[str, Any]) -> Array:
        return self.fn(B, z, op)

    def __call__(self, B: Any, z: Array, op: Mapping[str, Any]) -> Array:
        """Total cost [...] summed over the D sites."""
        return self.fn(B, z, op).sum(-1)


class ProblemShape:
    """What a problem and a workload problem derive alike from ``dist``, ``dim`` and ``options``."""

    dist: Distribution
    dim: int
    options: dict[str, Any]
    objective: Any  # an Objective, or a workload's objective (same interface)
    params_np: dict[str, np.ndarray]
    op: dict[str, Any]

    @property
    def param_names(self) -> list[str]:
        """Differentiated parameters only (``ParamSpec.differentiable=False`` ones are fixed, e.g. truncation bounds)."""
        return [k for k, ps in self.dist.params.items() if ps.differentiable]

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.dist.event_shape(self.dim, self.options)

    def compile_key(self) -> dict[str, Any]:
        """What a compiled estimator call is specialized to (JAX traces once per key): everything about the problem
        that is not passed as an argument.  Default: the whole identity (parameter values and objective constants
        included); a target whose values all travel as arrays in ``params_np`` / ``op`` (a workload: data,
        weights, η) narrows it to its shapes and model, so one compilation serves every example and checkpoint."""
        return self.spec.to_dict()  # type: ignore[attr-defined]
