"""What counting evaluations costs: ``ctx.f`` counted against ``ctx.f`` with counting paused, one process.

Prints, per eager backend (NumPy, PyTorch), the per-call time of ``ctx.f`` on a small sample (normal(0.5, 1.5),
f = z², D = 2, L = 8, R = 1) with counting paused (``ctx.counts.pause()``: the same call, nothing counted) and
counted, and the difference.  A JIT-
compiled JAX call counts only while it traces, so its per-call overhead is zero by construction.  Nothing is
asserted (no test asserts on wall-clock time); the numbers go to docs/notes/cost.md.

Run ``python -m suites.benchmarks.count_overhead [--calls 20000] [--repeat 5]``.  ``--cells`` instead prints the
per-call time (``time_estimator``, R = 1) of small whole cells (pathwise, score_function, disarm, relax; L = 8, D = 2;
NumPy, PyTorch, JAX): run it as a file with ``PYTHONPATH`` at a checkout before and one after a change (e.g.
``PYTHONPATH=/path/to/old python suites/benchmarks/count_overhead.py --cells``) to compare.
"""

from __future__ import annotations

import argparse
import timeit

from harness.backends import get_backend
from harness.measure import runner
from harness.measure.runner import MeasureRequest
from harness.measure.timing import TimingConfig
from harness.problems import ProblemSpec
from harness.registry import Context, get_estimator


def overhead(backend: str, calls: int, repeat: int) -> tuple[float, float]:
    """(paused, counted) per-call microseconds of ``ctx.f`` on the small sample (best of ``repeat``)."""
    prob = ProblemSpec("normal", "quadratic", 2, {"loc": 0.5, "scale": 1.5}, {"k": 0.0}).build()
    ctx = Context.for_problem(prob, backend, L=8, R=1, noise=get_backend(backend).noise(0, "float64", "cpu"))
    z = ctx.sample()
    with ctx.counts.pause():
        raw = min(timeit.repeat(lambda: ctx.f(z), number=calls, repeat=repeat)) / calls * 1e6
    counted = min(timeit.repeat(lambda: ctx.f(z), number=calls, repeat=repeat)) / calls * 1e6
    return raw, counted


def cells() -> None:
    """Per-call microseconds of small whole cells, as one markdown row per (estimator, backend)."""
    normal = ProblemSpec("normal", "quadratic", 2, {"loc": 0.5, "scale": 1.5}, {"k": 0.0}).build()
    bern = ProblemSpec("bernoulli", "quadratic", 2, {"logits": 0.3}, {"k": 0.2}).build()
    print("| cell | per call (µs) |")
    print("|---|---|")
    for est, prob in (("pathwise", normal), ("score_function", normal), ("disarm", bern), ("relax", bern)):
        for b in ("numpy", "torch", "jax"):
            req = MeasureRequest(get_estimator(est, b), prob, L=8, R=1)
            t = runner.time_estimator(req, TimingConfig(max_time_s=1.0))
            print(f"| {est} / {b} | {t.time_median_s * 1e6:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cells", action="store_true", help="per-call time of small whole cells instead")
    a = ap.parse_args()
    if a.cells:
        cells()
        return
    print("| backend | ctx.f, counting paused (µs/call) | ctx.f, counted (µs/call) | overhead (µs/call) |")
    print("|---|---|---|---|")
    for backend in ("numpy", "torch"):
        raw, counted = overhead(backend, a.calls, a.repeat)
        print(f"| {backend} | {raw:.2f} | {counted:.2f} | {counted - raw:.2f} |")


if __name__ == "__main__":
    main()
