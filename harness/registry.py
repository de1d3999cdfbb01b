"""Estimator registry: (estimator name, backend) -> implementation + declared capabilities.

Estimators register with :func:`register_estimator`; third-party packages expose modules under the
entry-point group ``stochgrad.estimators`` and are imported by :func:`load_plugins`.  Capabilities are
data (:class:`EstimatorSpec`), so the suite expander, the tests and ``stochgrad check`` filter on them.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

ENTRY_POINT_GROUP = "stochgrad.estimators"
BACKENDS = ("numpy", "torch", "jax")
BUILTIN_MODULES = (
    "estimators.pathwise",
    "estimators.score_function",
    "estimators.enumeration",
    "estimators.implicit",
    "estimators.measure_valued",
    "estimators.relaxed",
    "estimators.arm",
    "estimators.rebar_relax",
    "estimators.rsvi",
    "estimators.grg",
    "estimators.kumaraswamy",
)


class RegistryError(ValueError):
    """Raised for duplicate registrations and unknown lookups."""


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter with its default and allowed range/choices (validated in suites)."""

    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def validate(self, value: Any) -> str | None:
        """Return an error message, or None when ``value`` is acceptable."""
        if self.choices is not None:
            if value not in self.choices:
                return f"must be one of {list(self.choices)}"
            return None
        if isinstance(self.default, bool) != isinstance(value, bool):
            return f"must be of type {type(self.default).__name__}"
        if isinstance(self.default, int | float) and not isinstance(value, int | float):
            return f"must be a number, got {value!r}"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high}"
        return None


@dataclass
class EstimatorSpec:
    """One implementation of an estimator on one backend, with its capabilities."""

    name: str
    backend: str
    fn: Callable[..., Any]
    distributions: tuple[str, ...]
    unbiased: bool
    hyperparameters: Mapping[str, Hyper] = field(default_factory=dict)
    reference: str = ""
    min_samples: int = 1
    requires: tuple[str, ...] = ()  # objective traits required, e.g. ("differentiable",)
    source: str = ""
    family: str = ""
    doc: str = ""

    def applies_to(self, distribution: str) -> bool:
        return distribution in self.distributions or "*" in self.distributions

    def defaults(self) -> dict[str, Any]:
        return {k: h.default for k, h in self.hyperparameters.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "family": self.family,
            "distributions": list(self.distributions),
            "unbiased": self.unbiased,
            "hyperparameters": {k: h.default for k, h in self.hyperparameters.items()},
            "min_samples": self.min_samples,
            "requires": list(self.requires),
            "reference": self.reference,
            "source": self.source,
        }


_REGISTRY: dict[tuple[str, str], EstimatorSpec] = {}
_FAILED_PLUGINS: dict[str, str] = {}
_LOADED = {"builtins": False, "plugins": False}


def _source_of(fn: Callable[..., Any]) -> str:
    try:
        path = inspect.getsourcefile(fn) or "?"
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        path, line = getattr(fn, "__module__", "?"), 0
    return f"{fn.__module__}.{fn.__qualname__} ({path}:{line})"


def register_estimator(
    name: str,
    backend: str,
    *,
    distributions: Iterable[str],
    unbiased: bool,
    hyperparameters: Mapping[str, Hyper | Any] | None = None,
    reference: str = "",
    min_samples: int = 1,
    requires: Iterable[str] = (),
    family: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn(ctx) -> {param: array[R, *shape]}`` under (name, backend)."""
    if backend not in BACKENDS:
        raise RegistryError(f"estimator {name!r}: unknown backend {backend!r}; valid: {list(BACKENDS)}")
    hypers = {k: (v if isinstance(v, Hyper) else Hyper(default=v)) for k, v in (hyperparameters or {}).items()}

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = (name, backend)
        source = _source_of(fn)
        if key in _REGISTRY and _REGISTRY[key].source != source:
            raise RegistryError(
                f"estimator {name!r} on backend {backend!r} registered twice: "
                f"first by {_REGISTRY[key].source}, again by {source}"
            )
        _REGISTRY[key] = EstimatorSpec(
            name=name,
            backend=backend,
            fn=fn,
            distributions=tuple(distributions),
            unbiased=unbiased,
            hyperparameters=hypers,
            reference=reference,
            min_samples=min_samples,
            requires=tuple(requires),
            source=source,
            family=family or fn.__module__.rsplit(".", 1)[-1],
            doc=inspect.getdoc(fn) or "",
        )
        return fn

    return deco


def load_builtins() -> None:
    if _LOADED["builtins"]:
        return
    _LOADED["builtins"] = True
    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a real import error inside an existing module
                raise


def load_plugins() -> dict[str, str]:
    """Import every module in the ``stochgrad.estimators`` entry-point group; failures are recorded."""
    if _LOADED["plugins"]:
        return dict(_FAILED_PLUGINS)
    _LOADED["plugins"] = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except RegistryError:
            raise
        except Exception as exc:  # a broken plugin is reported, never fatal
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            _FAILED_PLUGINS[f"{ep.name} ({ep.value})"] = last
    return dict(_FAILED_PLUGINS)


def ensure_loaded() -> None:
    load_builtins()
    load_plugins()


def failed_plugins() -> dict[str, str]:
    ensure_loaded()
    return dict(_FAILED_PLUGINS)


def list_estimators(
    pattern: str = "*", backend: str | None = None, distribution: str | None = None
) -> list[EstimatorSpec]:
    """Registered implementations matching an fnmatch ``pattern`` (and backend / distribution)."""
    ensure_loaded()
    out = [
        s
        for (n, b), s in sorted(_REGISTRY.items())
        if fnmatch.fnmatch(n, pattern)
        and (backend is None or fnmatch.fnmatch(b, backend))
        and (distribution is None or s.applies_to(distribution))
    ]
    return out


def estimator_names() -> list[str]:
    ensure_loaded()
    return sorted({n for n, _ in _REGISTRY})


def get_estimator(name: str, backend: str) -> EstimatorSpec:
    ensure_loaded()
    try:
        return _REGISTRY[(name, backend)]
    except KeyError:
        have = sorted(b for n, b in _REGISTRY if n == name)
        if have:
            raise RegistryError(f"estimator {name!r} has no {backend!r} implementation; available: {have}") from None
        raise RegistryError(f"unknown estimator {name!r}; valid: {estimator_names()}") from None


def unregister(name: str, backend: str) -> None:
    """Remove a registration (used by tests that register throw-away estimators)."""
    _REGISTRY.pop((name, backend), None)
