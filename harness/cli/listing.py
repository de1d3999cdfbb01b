"""The catalog as ``stochgrad list`` shows it: estimators (backends, capabilities), distributions, objectives,
backends with their devices, and failed plugins — as text or as JSON-ready data."""

from __future__ import annotations

import json
from typing import Any


def print_listing(pattern: str = "*", as_json: bool = False) -> int:
    """Print what ``stochgrad list [PATTERN] [--json]`` shows; returns the exit code."""
    from harness.backends import backend_status
    from harness.problems import DISTRIBUTIONS, OBJECTIVES
    from harness.registry import failed_plugins, implementations

    specs = implementations(pattern)
    if as_json:
        print(
            json.dumps(
                {
                    "estimators": [s.summary() for s in specs],
                    "distributions": {
                        n: {"params": list(d.params), "support": d.support, "discrete": d.discrete}
                        for n, d in sorted(DISTRIBUTIONS.items())
                    },
                    "objectives": {
                        n: {
                            "params": {k: (None if v is None else v) for k, v in o.params.items()},
                            "supports": sorted(o.supports),
                        }
                        for n, o in sorted(OBJECTIVES.items())
                    },
                    "backends": backend_status(),
                    "failed_plugins": failed_plugins(),
                },
                indent=2,
                default=str,
            )
        )
        return 0
    by_name: dict[str, list[Any]] = {}
    for s in specs:
        by_name.setdefault(s.name, []).append(s)
    print("ESTIMATORS")
    for name, ss in by_name.items():
        s0 = ss[0]
        hp = ", ".join(f"{k}={h.default}" for k, h in s0.hyperparameters.items()) or "-"
        dists = ",".join(s0.distributions)
        print(
            f"  {name:24s} backends={','.join(s.backend for s in ss):16s} "
            f"{'unbiased' if s0.unbiased else 'BIASED  '} L>={s0.min_samples} hyper: {hp}"
        )
        print(f"  {'':24s} distributions: {dists}")
        if s0.reference:
            print(f"  {'':24s} ref: {s0.reference}")
    print("\nDISTRIBUTIONS")
    for n, d in sorted(DISTRIBUTIONS.items()):
        print(f"  {n:18s} params: {', '.join(d.params):36s} support: {d.support}")
    print("\nOBJECTIVES")
    for n, o in sorted(OBJECTIVES.items()):
        ps = ", ".join(f"{k}={v}" for k, v in o.params.items())
        print(f"  {n:20s} {o.doc}  [{ps}]")
    print("\nBACKENDS")
    for n, st in backend_status().items():
        where = f"devices: {', '.join(st['devices'])}" if st["available"] else f"UNAVAILABLE: {st['reason']}"
        print(f"  {n:8s} {where}")
    fp = failed_plugins()
    print("\nFAILED PLUGINS" + ("" if fp else ": none"))
    for ep, err in fp.items():
        print(f"  {ep}: {err}")
    return 0
