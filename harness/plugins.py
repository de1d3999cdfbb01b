"""Loading what registers itself: the modules of a built-in package, and third-party entry points, each contained.

Estimators (:mod:`harness.registry`) and workloads (:mod:`harness.workloads`) are found the same way:

- :func:`import_package_modules` imports every module of a built-in package whose name does not start with ``_``
  (there is no list to edit; a module registers what it defines when it is imported);
- :func:`load_entry_points` imports every entry point of a group, one at a time.  A plugin that fails in any way
  (an exception, ``SystemExit``, an object its registry refuses) is recorded with a one-line reason, whatever it
  registered before failing is rolled back through the registry's journal, and the next plugin is loaded: never
  fatal, never half-registered.  ``KeyboardInterrupt`` still stops the process.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
from collections.abc import Callable
from importlib import metadata
from typing import Any


class PackageShadowedError(ImportError):
    """A built-in package resolved to a bare directory (a namespace package) earlier on ``sys.path``."""


def import_package_modules(package: str) -> list[str]:
    """Import every module of ``package`` not starting with ``_`` (sorted by name); returns their full names."""
    pkg = importlib.import_module(package)
    if getattr(pkg, "__file__", None) is None:  # e.g. a directory named "estimators" in the working directory
        raise PackageShadowedError(
            f"the built-in {package!r} package resolved to a namespace package at {list(pkg.__path__)}: a "
            f"directory named {package!r} in the working directory shadows it; run from elsewhere"
        )
    names = [f"{package}.{m.name}" for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name)]
    names = [n for n in names if not n.rsplit(".", 1)[-1].startswith("_")]
    for name in names:
        importlib.import_module(name)
    return names


def failure_line(exc: BaseException) -> str:
    """The one line a failed plugin is reported with (``SystemExit`` named as such: it is not an exit)."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) raised while importing the plugin"
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def load_entry_points(
    group: str,
    *,
    mark: Callable[[], int],
    rollback: Callable[[int], None],
    accept: Callable[[Any, int], None] | None = None,
) -> dict[str, str]:
    """Load every entry point of ``group``, each contained; returns ``{"name (value)": reason}`` for the failures.

    ``mark()`` returns the registry's journal position before a plugin loads and ``rollback(position)`` undoes
    everything registered since; ``accept(obj, position)`` receives the loaded object (a module, a class, an
    instance) and registers or validates it, raising to refuse it.  A broken installation whose metadata cannot be
    read is reported under ``"<entry points>"``.
    """
    try:
        eps = list(metadata.entry_points(group=group))
    except Exception as exc:  # a broken installation's metadata must not stop anything
        return {"<entry points>": f"{type(exc).__name__}: {exc}"}
    failed: dict[str, str] = {}
    for ep in eps:
        position = mark()
        try:
            obj = ep.load()
            if accept is not None:
                accept(obj, position)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit, registry errors, ImportError, ...: reported, never fatal
            rollback(position)
            failed[f"{ep.name} ({ep.value})"] = failure_line(exc)
    return failed
