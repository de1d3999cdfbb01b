"""The walk of one cell through the code: which modules ("rooms") it enters and how often it goes back and forth.

``python -m suites.benchmarks.walk [SUITE] [--index I]`` expands the suite (default: ``suites/smoke.toml``), takes
its first numpy cell (or cell ``I``), runs it once untraced (caches, truth, checkpoints: the warm state a run reaches
after its first cell) and once under :func:`sys.setprofile`, recording every call between project modules
(``harness``, ``estimators``, ``stochgrad``; module-level import code excluded).  It prints:

* rooms entered: the project modules whose functions the cell calls (and the parts: packages such as
  ``harness.measure`` or ``estimators``);
* crossings: calls whose caller is in another module (distinct caller -> callee edges, and in total);
* returns to the runner: calls into ``harness.measure.runner`` made from another module while a runner frame is
  already on the stack (the runner handing work out and being called back);
* back-and-forth: calls into any module that is already on the stack below another module (A -> B -> A).

Works on any checkout (it only uses ``harness.suite.expand.expand`` and ``harness.measure.runner.run_cell``).
"""

from __future__ import annotations

import argparse
import collections
import sys
from typing import Any

PROJECT = ("harness", "estimators", "stochgrad")
RUNNER = "harness.measure.runner"


def _module(frame: Any) -> str | None:
    name = frame.f_globals.get("__name__", "")
    if frame.f_code.co_name == "<module>" or name.split(".")[0] not in PROJECT:
        return None
    return name


def _project_stack(frame: Any) -> list[str]:
    out = []
    f = frame
    while f is not None:
        m = _module(f)
        if m is not None:
            out.append(m)
        f = f.f_back
    return out[::-1]  # outermost first


def trace(fn: Any) -> dict[str, Any]:
    """Run ``fn()`` under a profiler; return the walk's counts."""
    rooms: collections.Counter = collections.Counter()
    edges: collections.Counter = collections.Counter()
    returns_to_runner = 0
    back_and_forth: collections.Counter = collections.Counter()

    def prof(frame: Any, event: str, arg: Any) -> None:
        nonlocal returns_to_runner
        if event != "call":
            return
        callee = _module(frame)
        if callee is None:
            return
        stack = _project_stack(frame.f_back)
        if not stack:
            return
        caller = stack[-1]
        rooms[callee] += 1
        if caller != callee:
            edges[(caller, callee)] += 1
            if callee in stack:  # re-entering a module that handed control to another one
                back_and_forth[callee] += 1
                if callee == RUNNER:
                    returns_to_runner += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return {
        "rooms": rooms,
        "edges": edges,
        "returns_to_runner": returns_to_runner,
        "back_and_forth": back_and_forth,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m suites.benchmarks.walk", description=__doc__.splitlines()[0])
    ap.add_argument("suite", nargs="?", default="suites/smoke.toml")
    ap.add_argument("--index", type=int, default=None, help="cell index (default: the first numpy cell)")
    ap.add_argument("--timing", action="store_true", help="keep the cell's timing phase (default: off)")
    a = ap.parse_args(argv)
    from dataclasses import replace

    from harness.measure.runner import run_cell
    from harness.suite.expand import expand

    cells = expand(a.suite).cells
    i = a.index if a.index is not None else next(k for k, c in enumerate(cells) if c.backend == "numpy")
    cell = replace(cells[i], timing=a.timing)
    first = run_cell(cell)
    assert first.status == "ok", first.message
    walk = trace(lambda: run_cell(cell))
    print(f"cell: {cell.label()}")
    parts = sorted({".".join(m.split(".")[:2]) if m.startswith("harness.") else m.split(".")[0] for m in walk["rooms"]})
    print(f"parts entered ({len(parts)}): {', '.join(parts)}")
    print(f"rooms entered ({len(walk['rooms'])}):")
    for m, n in sorted(walk["rooms"].items()):
        print(f"  {m:40s} {n:6d} calls")
    print(f"crossings: {len(walk['edges'])} distinct caller -> callee edges, {sum(walk['edges'].values())} calls")
    for (src, dst), n in sorted(walk["edges"].items()):
        print(f"  {src} -> {dst}: {n}")
    print(f"returns to the runner: {walk['returns_to_runner']}")
    print(f"back-and-forth (re-entries into a module below on the stack): {sum(walk['back_and_forth'].values())}")
    for m, n in sorted(walk["back_and_forth"].items()):
        print(f"  {m}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
