"""Benchmark (not a test): what protected estimator inputs cost per call (issue 22).

``PYTHONPATH=. python tests/support/protected_inputs_bench.py`` prints, for NumPy and torch:
1. the added work alone: the prepared call of an estimator that does nothing (fresh dicts, read-only views, the
   torch version-counter watch) against calling it bare on the same Context, best of 5 x 2000 (timeit);
2. a real call: ``pathwise`` (R = 1, L = 1, the timing phase's call) through the prepared call against the bare
   call on the Context as handed over before issue 22, interleaved, medians of 7 rounds of 200 calls.
"""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

from harness import registry
from harness.backends import get_backend
from harness.problems import ProblemSpec
from harness.registry import get_estimator, make_context

PROBLEMS = {
    "normal D=1000": ("normal", {"loc": 0.0, "scale": 1.0}, 1000),
    "mvn D=300": ("mvn", {"loc": 0.0, "scale_tril": 1.0}, 300),
}


def _noop(ctx: Any) -> None:
    return None


def _per_call(f: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n


def main() -> None:
    registry.ensure_loaded()
    for label, (dist, params, dim) in PROBLEMS.items():
        p = ProblemSpec(distribution=dist, params=params, objective="quadratic", dim=dim).build()
        for b in ("numpy", "torch"):
            B = get_backend(b)
            tpl = make_context(p, B, L=1, R=1, noise=None)
            _, timed = B.prepare_call(_noop, tpl)
            bare_ctx = tpl.with_(noise=B.noise(12345, "float64", "cpu"))
            t_p = min(timeit.repeat(timed, number=2000, repeat=5)) / 2000
            t_b = min(timeit.repeat(lambda: _noop(bare_ctx), number=2000, repeat=5)) / 2000
            print(f"{label} {b}: added work per call {(t_p - t_b) * 1e6:.1f} us")
            if dist != "normal":
                continue
            fn = get_estimator("pathwise", b).fn
            _, timed = B.prepare_call(fn, tpl)
            prot, bare = [], []
            for _ in range(7):
                prot.append(_per_call(timed, 200))
                bare.append(_per_call(lambda fn=fn: fn(bare_ctx), 200))
            mp, mb = statistics.median(prot), statistics.median(bare)
            print(f"{label} {b}: pathwise call protected {mp * 1e6:.1f} us, bare {mb * 1e6:.1f} us")


if __name__ == "__main__":
    main()
