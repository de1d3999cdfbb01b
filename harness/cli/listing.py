"""The catalog as ``stochgrad list`` prints it: estimators (backends, capabilities), distributions, objectives,
workloads, backends with their devices, and failed plugins — as text, or as the JSON of :func:`stochgrad.catalog`."""

from __future__ import annotations

import json
from typing import Any


def print_listing(cat: dict[str, Any], as_json: bool = False) -> None:
    """Print what ``stochgrad list [PATTERN] [--json]`` shows from ``cat`` (:func:`stochgrad.catalog`)."""
    if as_json:
        print(json.dumps(cat, indent=2, default=str))
        return
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in cat["estimators"]:
        by_name.setdefault(s["name"], []).append(s)
    print("ESTIMATORS")
    for name, ss in by_name.items():
        s0 = ss[0]
        hp = ", ".join(f"{k}={h['default']}" for k, h in s0["hyperparameters"].items()) or "-"
        dists = ",".join(s0["distributions"])
        print(
            f"  {name:24s} backends={','.join(s['backend'] for s in ss):16s} "
            f"{'unbiased' if s0['unbiased'] else 'BIASED  '} L>={s0['min_samples']} hyper: {hp}"
        )
        print(f"  {'':24s} distributions: {dists}")
        c = cat.get("costs", {}).get(name)
        if c:
            print(
                f"  {'':24s} cost (measured): {c['note']}"
                if c.get("note")
                else f"  {'':24s} cost (measured on {c['problem']}): f_evals = {c['f_evals']}, "
                f"grad_evals = {c['grad_evals']}, aux_evals = {c['aux_evals']}"
            )
        if s0["reference"]:
            print(f"  {'':24s} ref: {s0['reference']}")
    print("\nDISTRIBUTIONS")
    for n, d in cat["distributions"].items():
        print(f"  {n:18s} params: {', '.join(d['params']):36s} support: {d['support']}")
    print("\nOBJECTIVES")
    for n, o in cat["objectives"].items():
        ps = ", ".join(f"{k}={v}" for k, v in o["params"].items())
        print(f"  {n:20s} {o['doc']}  [{ps}]")
    print("\nWORKLOADS")
    for n, w in cat["workloads"].items():
        print(f"  {n:20s} latent: {w['latent']:12s} backends: {','.join(w['backends']):16s} {w['doc']}")
    print("\nBACKENDS")
    for n, st in cat["backends"].items():
        where = f"devices: {', '.join(st['devices'])}" if st["available"] else f"UNAVAILABLE: {st['reason']}"
        print(f"  {n:8s} {where}")
    fp = cat["failed_plugins"]
    print("\nFAILED PLUGINS" + ("" if fp else ": none"))
    for ep, err in fp.items():
        print(f"  {ep}: {err}")
