"""Estimator registry: one declaration per estimator name, implementations attached per backend.

An estimator is declared once with :func:`register_estimator` (its capabilities: distributions, unbiasedness,
hyperparameters with ranges, minimum L, requirements, reference), which validates the declaration and returns an
:class:`Estimator`; implementations attach with ``@est.implementation("numpy")`` or
``@est.implementation("torch", "jax")``.  Built-in modules in the ``estimators`` package are discovered (every
module not starting with ``_``); third-party modules in the entry-point group ``stochgrad.estimators`` are imported
by :func:`load_plugins`.  A plugin that fails in any way (an exception, ``SystemExit``, an invalid declaration, a
name already taken) is recorded in :func:`failed_plugins` with the reason, everything it registered is rolled back,
and everything else keeps working.  Duplicate names: the first registration wins (built-ins load first); a second
source registering the same name fails with an error naming both sources.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import pkgutil
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from harness.fits import FittedState
from harness.hyper import Hyper

ENTRY_POINT_GROUP = "stochgrad.estimators"
BACKENDS = ("numpy", "torch", "jax")
BUILTIN_PACKAGE = "estimators"
REQUIREMENTS = {
    "differentiable": "the objective must be differentiable in z",
    "separable": "the objective must be a sum over sites",
    "multi_sample_bound": "the estimator targets the gradient of the K-sample importance-weighted bound (K = L), "
    "not of E[f]: only objectives that declare a multi-sample bound (training runs) expand it",
}


class RegistryError(ValueError):
    """Invalid declaration, duplicate registration or unknown lookup."""


@dataclass
class Estimator:
    """An estimator's declaration: capabilities once, with implementations per backend in ``impls``."""

    name: str
    distributions: tuple[str, ...]
    unbiased: bool
    hyperparameters: Mapping[str, Hyper] = field(default_factory=dict)
    reference: str = ""
    min_samples: int = 1
    requires: tuple[str, ...] = ()
    family: str = ""
    doc: str = ""
    source: str = ""  # module that declared it
    biased_when: Mapping[str, Any] = field(default_factory=dict)  # hyper values that make it biased
    oracle: bool = False  # uses the exact answer: a reference line, never a recommendation
    state: FittedState | None = None  # what it fits to a target (saved and restored by training; harness.fits)
    impls: dict[str, Implementation] = field(default_factory=dict)

    @property
    def backends(self) -> list[str]:
        return [b for b in BACKENDS if b in self.impls]

    def applies_to(self, distribution: str) -> bool:
        return distribution in self.distributions or "*" in self.distributions

    def defaults(self) -> dict[str, Any]:
        return {k: h.default for k, h in self.hyperparameters.items()}

    def is_unbiased(self, hyper: Mapping[str, Any] | None = None) -> bool:
        """Declared unbiasedness at hyperparameter values ``hyper`` (defaults filled in)."""
        h = {**self.defaults(), **(hyper or {})}
        return self.unbiased and not any(h.get(k) == v for k, v in self.biased_when.items())

    def implementation(self, *backends: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator attaching ``fn(ctx) -> {param: array[R, *param_shape]}`` for each of ``backends``."""
        bad = [b for b in backends if b not in BACKENDS]
        if not backends or bad:
            raise RegistryError(
                f"estimator {self.name!r} ({self.source}): unknown backend {bad[0] if bad else None!r}; "
                f"valid: {list(BACKENDS)}"
            )

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(fn):
                raise RegistryError(f"estimator {self.name!r}: implementation must be callable, got {fn!r}")
            src = _source_of(fn)
            for b in backends:
                old = self.impls.get(b)
                if old is not None and old.source != src:
                    raise RegistryError(
                        f"estimator {self.name!r} on backend {b!r} implemented twice: "
                        f"first by {old.source}, again by {src}"
                    )
                impl = Implementation(self, b, fn, src)
                self.impls[b] = impl
                _journal.append(("impl", self.name, b))
            return fn

        return deco

    impl = implementation

    def summary(self) -> dict[str, Any]:
        """JSON-serializable capabilities (what meta.json records as the catalog)."""
        return {
            "name": self.name,
            "backends": self.backends,
            "family": self.family,
            "distributions": list(self.distributions),
            "unbiased": self.unbiased,
            "biased_when": dict(self.biased_when),
            "oracle": self.oracle,
            "fitted_state": self.state is not None,
            "hyperparameters": {
                k: {
                    "default": h.default,
                    "low": h.low,
                    "high": h.high,
                    "choices": None if h.choices is None else list(h.choices),
                    "doc": h.doc,
                }
                for k, h in self.hyperparameters.items()
            },
            "min_samples": self.min_samples,
            "requires": list(self.requires),
            "reference": self.reference,
            "source": self.source,
            "doc": self.doc.split("\n\n")[0].strip(),
        }


@dataclass
class Implementation:
    """One backend's implementation of an :class:`Estimator`; capability attributes read through to it."""

    estimator: Estimator
    backend: str
    fn: Callable[..., Any]
    source: str

    def __getattr__(self, item: str) -> Any:  # name, distributions, unbiased, hyperparameters, ...
        if item in ("estimator", "__setstate__", "__getstate__"):
            raise AttributeError(item)
        return getattr(self.estimator, item)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or self.estimator.doc

    def summary(self) -> dict[str, Any]:
        return {**self.estimator.summary(), "backend": self.backend, "source": self.source}

    def __repr__(self) -> str:
        return f"Implementation({self.estimator.name!r}, {self.backend!r})"


_DECLS: dict[str, Estimator] = {}
_FAILED_PLUGINS: dict[str, str] = {}
_LOADED = {"builtins": False, "plugins": False}
_journal: list[tuple[str, str, str]] = []  # registrations in order (rolled back for a failing plugin)


def _source_of(fn: Callable[..., Any]) -> str:
    try:
        path = inspect.getsourcefile(fn) or "?"
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        path, line = getattr(fn, "__module__", "?"), 0
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)} ({path}:{line})"


def _caller_module() -> str:
    frame = inspect.currentframe()
    try:
        f = frame.f_back.f_back if frame and frame.f_back else None  # type: ignore[union-attr]
        while f is not None and f.f_globals.get("__name__", "").startswith(("harness.registry", "stochgrad")):
            f = f.f_back
        return f.f_globals.get("__name__", "?") if f is not None else "?"
    finally:
        del frame


def _known_distributions() -> list[str]:
    from harness.problems import DISTRIBUTIONS

    return sorted(DISTRIBUTIONS)


def _validate(est: Estimator) -> None:
    where = f"estimator {est.name!r} (declared in {est.source})"
    if not isinstance(est.name, str) or not est.name or any(c in est.name for c in "*?[] \t\n"):
        raise RegistryError(f"{where}: name must be a non-empty string without wildcards or whitespace")
    known = _known_distributions()
    if not est.distributions:
        raise RegistryError(f"{where}: distributions must not be empty; valid: {known + ['*']}")
    for d in est.distributions:
        if d != "*" and d not in known:
            raise RegistryError(f"{where}: unknown distribution {d!r}; valid: {known + ['*']}")
    if not isinstance(est.unbiased, bool):
        raise RegistryError(f"{where}: unbiased must be True or False, got {est.unbiased!r}")
    if not isinstance(est.min_samples, int) or isinstance(est.min_samples, bool) or est.min_samples < 1:
        raise RegistryError(f"{where}: min_samples must be a positive integer, got {est.min_samples!r}")
    for r in est.requires:
        if r not in REQUIREMENTS:
            raise RegistryError(f"{where}: unknown requirement {r!r}; valid: {sorted(REQUIREMENTS)}")
    for k, h in est.hyperparameters.items():
        msg = h.validate(h.default)
        if msg:
            raise RegistryError(f"{where}: hyperparameter {k!r}: default {h.default!r} {msg}")
    for k in est.biased_when:
        if k not in est.hyperparameters:
            raise RegistryError(f"{where}: biased_when names unknown hyperparameter {k!r}")
    if est.state is not None:
        msg = est.state.validate() if isinstance(est.state, FittedState) else "state must be a FittedState"
        if msg:
            raise RegistryError(f"{where}: {msg}")


def register_estimator(
    name: str,
    *,
    distributions: Iterable[str],
    unbiased: bool,
    hyperparameters: Mapping[str, Hyper | Any] | None = None,
    reference: str = "",
    min_samples: int = 1,
    requires: Iterable[str] = (),
    family: str = "",
    doc: str = "",
    biased_when: Mapping[str, Any] | None = None,
    oracle: bool = False,
    state: FittedState | None = None,
) -> Estimator:
    """Declare an estimator (validated now) and return it; attach implementations with ``.implementation``.

    ``distributions`` are distribution names (``"*"``: all); ``hyperparameters`` map names to :class:`Hyper` (or a
    bare default); ``requires`` lists objective traits (``differentiable``, ``separable``); ``biased_when`` maps
    hyperparameters to values at which the estimator is biased (e.g. ``{"correction": False}``); ``oracle=True``
    marks a reference that uses the exact answer (shown as a reference line, never recommended); ``state`` declares
    what the estimator fits to its target (:class:`harness.fits.FittedState`, e.g. ``FitCache.declaration()``), which
    training saves with its checkpoints and restores on resume.
    """
    module = _caller_module()
    hypers = {k: (v if isinstance(v, Hyper) else Hyper(default=v)) for k, v in (hyperparameters or {}).items()}
    est = Estimator(
        name=name,
        distributions=tuple([distributions] if isinstance(distributions, str) else distributions),
        unbiased=unbiased,
        hyperparameters=hypers,
        reference=reference,
        min_samples=min_samples,
        requires=tuple([requires] if isinstance(requires, str) else requires),
        family=family or module.rsplit(".", 1)[-1],
        doc=inspect.cleandoc(doc) if doc else inspect.cleandoc(getattr(sys.modules.get(module), "__doc__", None) or ""),
        source=module,
        biased_when=dict(biased_when or {}),
        oracle=oracle,
        state=state,
    )
    _validate(est)
    old = _DECLS.get(name)
    if old is not None:
        if old.source != module:
            raise RegistryError(f"estimator {name!r} registered twice: first by {old.source}, again by {module}")
        est.impls = {}  # the same module re-declaring (a reload) replaces its declaration
    _DECLS[name] = est
    _journal.append(("decl", name, ""))
    return est


def load_builtins() -> None:
    """Import every module of the built-in ``estimators`` package (names starting with ``_`` are helpers)."""
    if _LOADED["builtins"]:
        return
    _LOADED["builtins"] = True
    pkg = importlib.import_module(BUILTIN_PACKAGE)
    if getattr(pkg, "__file__", None) is None:  # a bare directory named "estimators" earlier on sys.path
        raise RegistryError(
            f"the built-in {BUILTIN_PACKAGE!r} package resolved to a namespace package at {list(pkg.__path__)}: a "
            f"directory named {BUILTIN_PACKAGE!r} in the working directory shadows it; run from elsewhere"
        )
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")


def _rollback(mark: int) -> None:
    for kind, name, backend in reversed(_journal[mark:]):
        if kind == "impl" and name in _DECLS:
            _DECLS[name].impls.pop(backend, None)
        elif kind == "decl":
            _DECLS.pop(name, None)
    del _journal[mark:]


def load_plugins() -> dict[str, str]:
    """Import every module in the ``stochgrad.estimators`` entry-point group; failures are recorded, not raised."""
    if _LOADED["plugins"]:
        return dict(_FAILED_PLUGINS)
    _LOADED["plugins"] = True
    try:
        eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # a broken installation's metadata must not stop anything
        _FAILED_PLUGINS["<entry points>"] = f"{type(exc).__name__}: {exc}"
        return dict(_FAILED_PLUGINS)
    for ep in eps:
        mark = len(_journal)
        try:
            ep.load()
            empty = [n for kind, n, _ in _journal[mark:] if kind == "decl" and not _DECLS[n].impls]
            if empty:
                raise RegistryError(f"estimator {empty[0]!r} declared without any implementation")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit, RegistryError, ImportError, ...: reported, never fatal
            _rollback(mark)
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            if isinstance(exc, SystemExit):
                last = f"SystemExit({exc.code!r}) raised while importing the plugin"
            _FAILED_PLUGINS[f"{ep.name} ({ep.value})"] = last
    return dict(_FAILED_PLUGINS)


def ensure_loaded() -> None:
    load_builtins()
    load_plugins()


def failed_plugins() -> dict[str, str]:
    ensure_loaded()
    return dict(_FAILED_PLUGINS)


def declarations(pattern: str = "*", backend: str | None = None) -> list[Estimator]:
    """Declared estimators matching the fnmatch ``pattern`` (with an implementation on ``backend``)."""
    ensure_loaded()
    return [
        e
        for n, e in sorted(_DECLS.items())
        if e.impls
        and fnmatch.fnmatch(n, pattern)
        and (backend is None or any(fnmatch.fnmatch(b, backend) for b in e.impls))
    ]


def implementations(
    pattern: str = "*", backend: str | None = None, distribution: str | None = None
) -> list[Implementation]:
    """Registered (estimator, backend) implementations matching ``pattern`` (and backend / distribution)."""
    return [
        e.impls[b]
        for e in declarations(pattern)
        for b in e.backends
        if (backend is None or fnmatch.fnmatch(b, backend)) and (distribution is None or e.applies_to(distribution))
    ]


def estimator_names() -> list[str]:
    return [e.name for e in declarations()]


def get_declaration(name: str) -> Estimator:
    ensure_loaded()
    est = _DECLS.get(name)
    if est is None or not est.impls:
        hint = f"; failed plugins: {_FAILED_PLUGINS}" if _FAILED_PLUGINS else ""
        raise RegistryError(f"unknown estimator {name!r}; valid: {estimator_names()}{hint}")
    return est


def get_estimator(name: str, backend: str) -> Implementation:
    est = get_declaration(name)
    if backend not in est.impls:
        raise RegistryError(f"estimator {name!r} has no {backend!r} implementation; available: {est.backends}")
    return est.impls[backend]


def unregister(name: str, backend: str | None = None) -> None:
    """Remove a registration (tests that register throw-away estimators)."""
    est = _DECLS.get(name)
    if est is None:
        return
    if backend is None:
        _DECLS.pop(name)
    else:
        est.impls.pop(backend, None)
        if not est.impls:
            _DECLS.pop(name)
