"""Model workloads (VAEs on digits, Bayesian logistic regression) measured at training checkpoints.

Workloads are plugins like estimators: :func:`register_workload` adds one (an instance of
:class:`~harness.workloads.base.Workload`), and third-party packages expose modules or Workload objects under
the entry-point group ``stochgrad.workloads`` (imported by :func:`load_plugins`; failures are reported, never
fatal).  See docs/notes/workloads.md.
"""

from __future__ import annotations

import importlib
import traceback
from importlib import metadata

from harness.workloads.base import Workload, WorkloadError

ENTRY_POINT_GROUP = "stochgrad.workloads"
BUILTIN_MODULES = ("harness.workloads.vae", "harness.workloads.blr")

_WORKLOADS: dict[str, Workload] = {}
_FAILED: dict[str, str] = {}
_LOADED = {"builtins": False, "plugins": False}


def register_workload(wl: Workload | type[Workload]) -> Workload:
    """Register a workload (instance or class); a second workload with the same name is an error."""
    inst = wl() if isinstance(wl, type) else wl
    if not isinstance(inst, Workload) or not inst.name:
        raise WorkloadError("workload", f"{wl!r} is not a named harness.workloads.Workload")
    old = _WORKLOADS.get(inst.name)
    if old is not None and type(old) is not type(inst):
        raise WorkloadError("workload", f"workload {inst.name!r} registered twice ({type(old)} and {type(inst)})")
    _WORKLOADS[inst.name] = inst
    return inst


def unregister_workload(name: str) -> None:
    _WORKLOADS.pop(name, None)


def load_plugins() -> dict[str, str]:
    """Import the built-in workloads and every ``stochgrad.workloads`` entry point; return the failures."""
    if not _LOADED["builtins"]:
        _LOADED["builtins"] = True
        for mod in BUILTIN_MODULES:
            importlib.import_module(mod)
    if not _LOADED["plugins"]:
        _LOADED["plugins"] = True
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                if isinstance(obj, Workload) or (isinstance(obj, type) and issubclass(obj, Workload)):
                    register_workload(obj)
            except Exception as exc:  # a broken plugin is reported, never fatal
                _FAILED[f"{ep.name} ({ep.value})"] = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return dict(_FAILED)


def workload_names() -> list[str]:
    load_plugins()
    return sorted(_WORKLOADS)


def get_workload(name: str) -> Workload:
    load_plugins()
    if name not in _WORKLOADS:
        raise WorkloadError("workload", f"unknown workload {name!r}; valid: {sorted(_WORKLOADS)}")
    return _WORKLOADS[name]


__all__ = [
    "ENTRY_POINT_GROUP",
    "Workload",
    "WorkloadError",
    "get_workload",
    "load_plugins",
    "register_workload",
    "unregister_workload",
    "workload_names",
]
