"""Finding estimators: fnmatch patterns over declared names (as timm's ``list_models``), by backend, by name.

Every lookup loads the built-ins and the plugins first (:func:`harness.registry.loading.ensure_loaded`), so what
it sees is the whole catalog.  A declaration without any implementation is invisible.
"""

from __future__ import annotations

import fnmatch

from harness.registry.declarations import Estimator, Implementation, RegistryError, table
from harness.registry.loading import ensure_loaded, failed_plugins


def declarations(pattern: str = "*", backend: str | None = None) -> list[Estimator]:
    """Declared estimators matching the fnmatch ``pattern`` (with an implementation on ``backend``)."""
    ensure_loaded()
    return [
        e
        for n, e in sorted(table().items())
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
    """Every declared estimator name with an implementation, sorted."""
    return [e.name for e in declarations()]


def get_declaration(name: str) -> Estimator:
    """The declaration of ``name``; an unknown name raises :class:`RegistryError` with the valid ones."""
    ensure_loaded()
    est = table().get(name)
    if est is None or not est.impls:
        failed = failed_plugins()
        hint = f"; failed plugins: {failed}" if failed else ""
        raise RegistryError(f"unknown estimator {name!r}; valid: {estimator_names()}{hint}")
    return est


def get_estimator(name: str, backend: str) -> Implementation:
    """The implementation of ``name`` on ``backend``."""
    est = get_declaration(name)
    if backend not in est.impls:
        raise RegistryError(f"estimator {name!r} has no {backend!r} implementation; available: {est.backends}")
    return est.impls[backend]
