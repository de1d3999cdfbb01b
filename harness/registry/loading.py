"""Loading estimators: the built-in ``estimators`` package (discovered) and the ``stochgrad.estimators`` entry points.

Built-in modules are every module of the ``estimators`` package not starting with ``_``; third-party modules in
the entry-point group ``stochgrad.estimators`` are imported by :func:`load_plugins`.  A plugin that fails in any
way (an exception, ``SystemExit``, an invalid declaration, a name already taken, a declaration without an
implementation) is recorded in :func:`failed_plugins` with the reason, everything it registered is rolled back,
and everything else keeps working.  Built-ins load first, so a plugin cannot take a built-in's name.
"""

from __future__ import annotations

from typing import Any

from harness.plugins import PackageShadowedError, import_package_modules, load_entry_points
from harness.registry.declarations import (
    RegistryError,
    before_user_declaration,
    declared_since,
    journal_mark,
    rollback,
    table,
)

ENTRY_POINT_GROUP = "stochgrad.estimators"
BUILTIN_PACKAGE = "estimators"

_FAILED_PLUGINS: dict[str, str] = {}
_LOADED = {"builtins": False, "plugins": False}


def load_builtins() -> None:
    """Import every module of the built-in ``estimators`` package (names starting with ``_`` are helpers)."""
    if _LOADED["builtins"]:
        return
    _LOADED["builtins"] = True
    try:
        import_package_modules(BUILTIN_PACKAGE)
    except PackageShadowedError as exc:
        raise RegistryError(str(exc)) from None


before_user_declaration(load_builtins)


def _complete(_: Any, mark: int) -> None:
    """A plugin must implement every estimator it declares (else it is rolled back)."""
    empty = [n for n in declared_since(mark) if not table()[n].impls]
    if empty:
        raise RegistryError(f"estimator {empty[0]!r} declared without any implementation")


def load_plugins() -> dict[str, str]:
    """Import every module in the ``stochgrad.estimators`` entry-point group; failures are recorded, not raised
    (each plugin contained and rolled back, :func:`harness.plugins.load_entry_points`)."""
    if _LOADED["plugins"]:
        return dict(_FAILED_PLUGINS)
    _LOADED["plugins"] = True
    _FAILED_PLUGINS.update(load_entry_points(ENTRY_POINT_GROUP, mark=journal_mark, rollback=rollback, accept=_complete))
    return dict(_FAILED_PLUGINS)


def ensure_loaded() -> None:
    """Built-ins, then plugins (each once per process)."""
    load_builtins()
    load_plugins()


def failed_plugins() -> dict[str, str]:
    """Plugins that failed to load: ``{"name (module)": reason}``."""
    ensure_loaded()
    return dict(_FAILED_PLUGINS)
