"""One file per distribution; each module defines ``DISTRIBUTION``.  Adding a file adds a family."""

from __future__ import annotations

import importlib
import pkgutil

from harness.problems.base import Distribution


def discover() -> dict[str, Distribution]:
    out: dict[str, Distribution] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        dist = getattr(mod, "DISTRIBUTION", None)
        if dist is not None:
            if dist.name in out:
                raise ValueError(f"distribution {dist.name!r} defined twice ({info.name})")
            out[dist.name] = dist
    return out
