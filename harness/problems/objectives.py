"""Objectives f(z) = Σ_sites g(z_site), written once for NumPy, PyTorch and JAX.

Each objective gives its per-site value on any backend (``fn``), and NumPy first and second
derivatives for the analytic NumPy estimators (pathwise, delta-method control variates).
Objective parameters are scalars unless documented (``categorical_target.target`` is a K-vector).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.problems.base import Objective

CONTINUOUS = frozenset({"real", "positive", "unit", "circle"})
ALL_SCALAR = CONTINUOUS | {"binary"}

OBJECTIVES: dict[str, Objective] = {}


def register_objective(obj: Objective) -> Objective:
    if obj.name in OBJECTIVES:
        raise ValueError(f"objective {obj.name!r} registered twice")
    OBJECTIVES[obj.name] = obj
    return obj


register_objective(
    Objective(
        name="quadratic",
        fn=lambda B, z, op: (z - op["k"]) ** 2,
        params={"k": 0.0},
        supports=ALL_SCALAR,
        grad_np=lambda z, op: 2.0 * (z - op["k"]),
        hess_np=lambda z, op: np.full_like(z, 2.0),
        doc="g(z) = (z - k)^2 per coordinate",
    )
)

register_objective(
    Objective(
        name="cos",
        fn=lambda B, z, op: B.xp.cos(op["omega"] * z),
        params={"omega": 1.0},
        supports=ALL_SCALAR,
        grad_np=lambda z, op: -op["omega"] * np.sin(op["omega"] * z),
        hess_np=lambda z, op: -(op["omega"] ** 2) * np.cos(op["omega"] * z),
        doc="g(z) = cos(omega z)",
    )
)

register_objective(
    Objective(
        name="exp_quad",
        fn=lambda B, z, op: B.xp.exp(-op["k"] * z**2),
        params={"k": 1.0},
        supports=ALL_SCALAR,
        grad_np=lambda z, op: -2.0 * op["k"] * z * np.exp(-op["k"] * z**2),
        hess_np=lambda z, op: (4.0 * op["k"] ** 2 * z**2 - 2.0 * op["k"]) * np.exp(-op["k"] * z**2),
        doc="g(z) = exp(-k z^2)",
    )
)

register_objective(
    Objective(
        name="linear",
        fn=lambda B, z, op: op["a"] * z,
        params={"a": 1.0},
        supports=ALL_SCALAR,
        grad_np=lambda z, op: np.full_like(z, op["a"]),
        hess_np=lambda z, op: np.zeros_like(z),
        doc="g(z) = a z",
    )
)

register_objective(
    Objective(
        name="bernoulli_toy",
        fn=lambda B, z, op: (z - op["t"]) ** 2,
        params={"t": 0.499},
        supports=frozenset({"binary"}),
        grad_np=lambda z, op: 2.0 * (z - op["t"]),
        hess_np=lambda z, op: np.full_like(z, 2.0),
        doc="g(b) = (b - t)^2, t = 0.499: the REBAR/RELAX toy problem",
    )
)


def _cat_target(B: Any, z: Any, op: Mapping[str, Any]) -> Any:
    return ((z - op["target"]) ** 2).sum(-1)


register_objective(
    Objective(
        name="categorical_target",
        fn=_cat_target,
        params={"target": None},
        supports=frozenset({"onehot", "simplex"}),
        grad_np=lambda z, op: 2.0 * (z - op["target"]),
        hess_np=lambda z, op: np.full_like(z, 2.0),
        doc="g(z) = Σ_k (z_k - t_k)^2 on one-hot (or relaxed) z; default t_k = (k+1)/(K+1)",
    )
)


def resolve_objective_params(name: str, given: Mapping[str, Any], categories: int) -> dict[str, Any]:
    """Defaults filled in; vector parameters as float64 arrays."""
    obj = OBJECTIVES[name]
    op = {**obj.params, **given}
    if name == "categorical_target":
        t = op["target"]
        op["target"] = (
            np.arange(1, categories + 1, dtype=np.float64) / (categories + 1)
            if t is None
            else np.asarray(t, dtype=np.float64)
        )
    return op


register_objective(
    Objective(
        name="simplex_power",
        fn=lambda B, z, op: (z ** op["p"]).sum(-1),
        params={"p": 2.5},
        supports=frozenset({"simplex"}),
        grad_np=lambda z, op: op["p"] * z ** (op["p"] - 1),
        hess_np=lambda z, op: op["p"] * (op["p"] - 1) * z ** (op["p"] - 2),
        doc="g(z) = Σ_k z_k^p on the simplex (p > 1 keeps it differentiable at the faces); closed form for dirichlet",
    )
)
