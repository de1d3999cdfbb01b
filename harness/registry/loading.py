"""Loading estimators: the built-in ``estimators`` package (discovered) and the ``stochgrad.estimators`` entry points.

Built-in modules are every module of the ``estimators`` package not starting with ``_``; third-party modules in
the entry-point group ``stochgrad.estimators`` are imported by :func:`load_plugins`.  A plugin that fails in any
way (an exception, ``SystemExit``, an invalid declaration, a name already taken, a declaration without an
implementation) is recorded in :func:`failed_plugins` with the reason, everything it registered is rolled back,
and everything else keeps working.  Built-ins load first, so a plugin cannot take a built-in's name.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from importlib import metadata

from harness.registry.declarations import RegistryError, declared_since, journal_mark, rollback, table

ENTRY_POINT_GROUP = "stochgrad.estimators"
BUILTIN_PACKAGE = "estimators"

_FAILED_PLUGINS: dict[str, str] = {}
_LOADED = {"builtins": False, "plugins": False}


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
        mark = journal_mark()
        try:
            ep.load()
            empty = [n for n in declared_since(mark) if not table()[n].impls]
            if empty:
                raise RegistryError(f"estimator {empty[0]!r} declared without any implementation")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit, RegistryError, ImportError, ...: reported, never fatal
            rollback(mark)
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            if isinstance(exc, SystemExit):
                last = f"SystemExit({exc.code!r}) raised while importing the plugin"
            _FAILED_PLUGINS[f"{ep.name} ({ep.value})"] = last
    return dict(_FAILED_PLUGINS)


def ensure_loaded() -> None:
    """Built-ins, then plugins (each once per process)."""
    load_builtins()
    load_plugins()


def failed_plugins() -> dict[str, str]:
    """Plugins that failed to load: ``{"name (module)": reason}``."""
    ensure_loaded()
    return dict(_FAILED_PLUGINS)
