"""Estimator declarations: one per name (capabilities as data), implementations attached per backend.

An estimator is declared once with :func:`register_estimator` (its capabilities: distributions, unbiasedness,
hyperparameters with ranges, minimum L, requirements, oracle, reference), which validates the declaration and
returns an :class:`Estimator`; implementations attach with ``@est.implementation("numpy")`` or
``@est.implementation("torch", "jax")``.  The declarations live in one table; every registration is journalled
so that :mod:`harness.registry.loading` can roll back a plugin that fails half-way.  Duplicate names: the first
registration wins; a second source registering the same name fails with an error naming both sources.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.fits import FittedState
from harness.problems import DISTRIBUTIONS
from harness.registry.hyper import Hyper

BACKENDS = ("numpy", "torch", "jax")
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
    constants: Callable[[Any], Mapping[str, Any]] | None = None  # per-target numbers fitted on the host: ctx.fitted
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
_journal: list[tuple[str, str, str]] = []  # registrations in order (rolled back for a failing plugin)


BUILTIN_PREFIX = "estimators."  # the built-in package's modules
_BEFORE_USER_DECLARATION: list[Callable[[], None]] = []  # loads the built-ins (set by harness.registry.loading)


def before_user_declaration(hook: Callable[[], None]) -> None:
    """Run ``hook`` (load the built-ins) before the first declaration from outside the built-in package, so that a
    user's or plugin's name clash with a built-in is refused at once, never leaving the built-ins half-loaded."""
    _BEFORE_USER_DECLARATION[:] = [hook]


def table() -> dict[str, Estimator]:
    """The declarations by name (the live table: lookups read it, :func:`unregister` edits it)."""
    return _DECLS


def journal_mark() -> int:
    """A position in the registration journal (to roll back what was registered after it)."""
    return len(_journal)


def declared_since(mark: int) -> list[str]:
    """Names declared since ``mark``."""
    return [name for kind, name, _ in _journal[mark:] if kind == "decl"]


def rollback(mark: int) -> None:
    """Undo every declaration and implementation registered since ``mark``."""
    for kind, name, backend in reversed(_journal[mark:]):
        if kind == "impl" and name in _DECLS:
            _DECLS[name].impls.pop(backend, None)
        elif kind == "decl":
            _DECLS.pop(name, None)
    del _journal[mark:]


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


def _validate(est: Estimator) -> None:
    where = f"estimator {est.name!r} (declared in {est.source})"
    if not isinstance(est.name, str) or not est.name or any(c in est.name for c in "*?[] \t\n"):
        raise RegistryError(f"{where}: name must be a non-empty string without wildcards or whitespace")
    known = sorted(DISTRIBUTIONS)
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
    if est.constants is not None and not callable(est.constants):
        raise RegistryError(f"{where}: constants must be callable ctx -> {{name: numbers}}, got {est.constants!r}")
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
    constants: Callable[[Any], Mapping[str, Any]] | None = None,
) -> Estimator:
    """Declare an estimator (validated now) and return it; attach implementations with ``.implementation``.

    ``distributions`` are distribution names (``"*"``: all); ``hyperparameters`` map names to :class:`Hyper` (or a
    bare default); ``requires`` lists objective traits (``differentiable``, ``separable``); ``biased_when`` maps
    hyperparameters to values at which the estimator is biased (e.g. ``{"correction": False}``); ``oracle=True``
    marks a reference that uses the exact answer (shown as a reference line, never recommended); ``state`` declares
    what the estimator fits to its target (:class:`harness.fits.FittedState`, e.g. ``FitCache.declaration()``), which
    training saves with its checkpoints and restores on resume.  ``constants(ctx) -> {name: numbers}`` computes the
    numbers an implementation fits to its target (control-variate weights, a temperature) on the host, before the
    measured call; the runner hands them to every implementation as ``ctx.fitted`` (backend arrays; on JAX arguments
    of the compiled call, so one compilation serves every target of the same shapes).  An implementation called
    without them (``ctx.fitted`` empty) calls ``constants(ctx)`` itself.
    """
    module = _caller_module()
    if not module.startswith(BUILTIN_PREFIX):
        for hook in _BEFORE_USER_DECLARATION:
            hook()
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
        constants=constants,
    )
    _validate(est)
    old = _DECLS.get(name)
    if old is not None:
        if old.source != module:
            raise RegistryError(
                f"estimator {name!r} is a built-in estimator (by {old.source}); {module} cannot register it again: choose another name"
                if old.source.startswith(BUILTIN_PREFIX)
                else f"estimator {name!r} registered twice: first by {old.source}, again by {module}"
            )
        est.impls = {}  # the same module re-declaring (a reload) replaces its declaration
    _DECLS[name] = est
    _journal.append(("decl", name, ""))
    return est
