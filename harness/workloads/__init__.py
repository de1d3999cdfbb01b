"""Model workloads (VAEs on digits, Bayesian logistic regression) measured at training checkpoints, and their registry.

Workloads are found like estimators: every module of the built-in package :mod:`harness.workloads.models` (names
not starting with ``_``) is imported and registers its workloads with :func:`register_workload`; third-party
packages expose modules, :class:`~harness.workloads.base.Workload` subclasses or instances under the entry-point
group ``stochgrad.workloads`` (:func:`load_plugins`).  A plugin that fails in any way (an exception, ``SystemExit``,
a name already taken, an object that is not a workload) is recorded in :func:`failed_plugins` with the reason,
whatever it registered is rolled back, and everything else keeps working (:mod:`harness.plugins`).
See docs/notes/workloads.md.
"""

from __future__ import annotations

import fnmatch
import types
from importlib import metadata  # noqa: F401  (tests fake entry points through harness.workloads.metadata)
from typing import Any

from harness.plugins import import_package_modules, load_entry_points
from harness.workloads.base import Workload, WorkloadError

ENTRY_POINT_GROUP = "stochgrad.workloads"
BUILTIN_PACKAGE = "harness.workloads.models"

_WORKLOADS: dict[str, Workload] = {}
_FAILED: dict[str, str] = {}
_LOADED = {"builtins": False, "plugins": False}
_journal: list[tuple[str, Workload | None]] = []  # (name, what it replaced) per registration, for rollback


def register_workload(wl: Workload | type[Workload]) -> Workload:
    """Register a workload (an instance, or a class instantiated without arguments) and return the instance.

    A second workload of another class under the same name is an error naming both (the same class registering
    again, e.g. a reloaded module, replaces the first).  The built-ins are loaded first, so a user's workload can
    never take a built-in's name and leave the registry half-loaded."""
    load_builtins()
    inst = wl() if isinstance(wl, type) and issubclass(wl, Workload) else wl
    if not isinstance(inst, Workload) or not isinstance(inst.name, str) or not inst.name:
        raise WorkloadError("workload", f"{wl!r} is not a named stochgrad.Workload (subclass or instance)")
    old = _WORKLOADS.get(inst.name)
    if old is not None and type(old) is not type(inst):
        raise WorkloadError(
            "workload", f"workload {inst.name!r} registered twice: first by {_origin(old)}, again by {_origin(inst)}"
        )
    _WORKLOADS[inst.name] = inst
    _journal.append((inst.name, old))
    return inst


def _origin(wl: Workload) -> str:
    return f"{type(wl).__module__}.{type(wl).__qualname__}"


def unregister_workload(name: str) -> None:
    """Remove a registration (tests and notebooks that register throw-away workloads)."""
    _WORKLOADS.pop(name, None)


def _rollback(mark: int) -> None:
    for name, old in reversed(_journal[mark:]):
        if old is None:
            _WORKLOADS.pop(name, None)
        else:
            _WORKLOADS[name] = old
    del _journal[mark:]


def _accept(obj: Any, mark: int) -> None:
    """An entry point names a module (which registered its workloads), a Workload subclass or a Workload instance."""
    if isinstance(obj, Workload) or (isinstance(obj, type) and issubclass(obj, Workload)):
        register_workload(obj)
    elif not isinstance(obj, types.ModuleType):  # a module registered its workloads when it was imported
        raise WorkloadError(
            "workload", f"the entry point names {obj!r}: expected a module, a Workload subclass or a Workload instance"
        )


def load_builtins() -> None:
    """Import every module of :mod:`harness.workloads.models` (each registers its workloads)."""
    if not _LOADED["builtins"]:
        _LOADED["builtins"] = True
        import_package_modules(BUILTIN_PACKAGE)


def load_plugins() -> dict[str, str]:
    """Import the built-in workloads and every ``stochgrad.workloads`` entry point; return the failures."""
    load_builtins()
    if not _LOADED["plugins"]:
        _LOADED["plugins"] = True
        _FAILED.update(
            load_entry_points(ENTRY_POINT_GROUP, mark=lambda: len(_journal), rollback=_rollback, accept=_accept)
        )
    return dict(_FAILED)


def failed_plugins() -> dict[str, str]:
    """Workload plugins that failed to load: ``{"name (value)": reason}``."""
    return load_plugins()


def workload_names(pattern: str = "*") -> list[str]:
    """Registered workload names matching the fnmatch ``pattern``."""
    load_plugins()
    return sorted(n for n in _WORKLOADS if fnmatch.fnmatch(n, pattern))


def get_workload(name: str) -> Workload:
    load_plugins()
    if name not in _WORKLOADS:
        hint = f"; failed workload plugins: {_FAILED}" if _FAILED else ""
        raise WorkloadError("workload", f"unknown workload {name!r}; valid: {sorted(_WORKLOADS)}{hint}")
    return _WORKLOADS[name]


__all__ = [
    "BUILTIN_PACKAGE",
    "ENTRY_POINT_GROUP",
    "Workload",
    "WorkloadError",
    "failed_plugins",
    "get_workload",
    "load_builtins",
    "load_plugins",
    "register_workload",
    "unregister_workload",
    "workload_names",
]
