"""The estimator registry: declarations (capabilities as data), the one capability matcher, and loading.

* :mod:`~harness.registry.declarations` — :func:`register_estimator`, :class:`Estimator` (one per name) and its
  per-backend :class:`Implementation`\\ s, validated at registration;
* :mod:`~harness.registry.hyper` — :class:`Hyper`, a hyperparameter's default and range;
* :mod:`~harness.registry.context` — :class:`Context`, what an implementation receives;
* :mod:`~harness.registry.matcher` — :func:`applies`, whether an estimator applies to a target's traits;
* :mod:`~harness.registry.loading` — the built-in ``estimators`` package and the ``stochgrad.estimators`` entry
  points (a failing plugin is reported and rolled back);
* :mod:`~harness.registry.lookup` — ``declarations("score*", backend="jax")``, :func:`get_estimator`, ...
"""

from __future__ import annotations

from harness.registry.context import EXACT_VALUE, Context, EvalCounts, make_context
from harness.registry.declarations import (
    BACKENDS,
    REQUIREMENTS,
    Estimator,
    Implementation,
    RegistryError,
    register_estimator,
    unregister,
)
from harness.registry.hyper import Hyper
from harness.registry.loading import (
    BUILTIN_PACKAGE,
    ENTRY_POINT_GROUP,
    ensure_loaded,
    failed_plugins,
    load_builtins,
    load_plugins,
)
from harness.registry.lookup import declarations, estimator_names, get_declaration, get_estimator, implementations
from harness.registry.matcher import applies

__all__ = [
    "BACKENDS",
    "EXACT_VALUE",
    "BUILTIN_PACKAGE",
    "ENTRY_POINT_GROUP",
    "REQUIREMENTS",
    "Context",
    "Estimator",
    "Hyper",
    "Implementation",
    "RegistryError",
    "applies",
    "declarations",
    "ensure_loaded",
    "estimator_names",
    "failed_plugins",
    "get_declaration",
    "get_estimator",
    "implementations",
    "load_builtins",
    "load_plugins",
    "make_context",
    "EvalCounts",
    "register_estimator",
    "unregister",
]
