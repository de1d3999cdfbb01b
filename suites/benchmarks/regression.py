"""Regression benchmarks of every registered estimator (asv): time, variance, bias and peak memory.

Parameters (stable strings, see ``_cases.py``): ``estimator``, ``backend`` (``backend:device``),
``problem``, ``L``, generated at import time from the registry and ``suites/regression.toml``.

* ``Time.time_estimator`` — seconds per estimator call at R = 1 (one L-sample gradient, as in training).
  Setup builds the problem, prepares the call with :func:`harness.measure.runner.prepare` and runs it three times
  (jax.jit compilation and warm-up), so only the call itself is timed.  The call blocks on its output
  (``block_until_ready`` / CUDA synchronize) and the timer puts a device barrier before each clock read.
* ``Accuracy.track_variance`` — variance of the L-sample estimate, in (gradient units)²: for each
  distribution parameter, the mean over its coordinates of the per-coordinate variance over R replicates
  (the results' ``variance`` column), summed over the parameters.  Lower is better.
* ``Accuracy.track_bias`` — −log10 of the bias test's p-value (``harness.stats.metrics.bias_test``, the ``bias_p``
  column, Bonferroni over parameters), floored at −log10 0.05: the floor means no detectable bias,
  larger values mean stronger evidence of bias (one statistics authority: the report and check use it too).
  Both track_ values come from R = ``replicates`` estimates with a seed fixed per parameter combination,
  so they are deterministic for a given commit.
* ``Memory.peakmem_estimate`` — peak resident memory (bytes) of a process running one vectorized
  R-replicate estimate (host memory, so CPU devices only).

``version`` is explicit: cosmetic edits to this file keep the history; bump it when what is measured
changes (and say so in docs/notes/asv.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from harness.backends import get_backend

from . import _cases

VERSION = "stochgrad-regression-1"
CATALOG = _cases.build_catalog()
PARAMS = CATALOG.params
PARAM_NAMES = ["estimator", "backend", "problem", "L"]

for _name in sorted({b.partition(":")[0] for b in CATALOG.backends}):
    get_backend(_name).unavailable_reason()  # import torch/jax once here, not in every forkserver child

_BARRIER: list[Callable[[], None]] = [lambda: None]


def synced_clock() -> float:
    """asv timer: a device barrier (CUDA synchronize on GPU cases), then ``time.perf_counter``."""
    _BARRIER[0]()
    return time.perf_counter()


class Time:
    """Per-call estimator time (R = 1), compile and warm-up in setup."""

    params = PARAMS
    param_names = PARAM_NAMES
    version = VERSION
    timer = staticmethod(synced_clock)
    rounds = 1
    repeat = (10, 50, 1.0)  # (min samples, max samples, seconds): one call per sample, median reported
    warmup_time = 0.05
    timeout = 180

    def setup(self, estimator: str, backend: str, problem: str, L: str) -> None:
        self.call, _BARRIER[0] = _cases.timed_call(CATALOG, (estimator, backend, problem, L))

    def time_estimator(self, estimator: str, backend: str, problem: str, L: str) -> None:
        self.call()


class Accuracy:
    """Variance and bias z-score from R fixed-seed replicate estimates (deterministic per commit)."""

    params = PARAMS
    param_names = PARAM_NAMES
    version = VERSION
    timeout = 300

    def setup(self, estimator: str, backend: str, problem: str, L: str) -> None:
        self.stats = _cases.accuracy(CATALOG, (estimator, backend, problem, L))

    def track_variance(self, estimator: str, backend: str, problem: str, L: str) -> float:
        return self.stats["variance"]

    track_variance.unit = "gradient^2"  # type: ignore[attr-defined]

    def track_bias(self, estimator: str, backend: str, problem: str, L: str) -> float:
        return max(-math.log10(max(self.stats["bias_p"], 1e-300)), _cases.BIAS_FLOOR)

    track_bias.unit = "-log10 p (floor: no detectable bias)"  # type: ignore[attr-defined]


class Memory:
    """Peak RSS of one vectorized R-replicate estimate (host memory: CPU devices only)."""

    params = PARAMS
    param_names = PARAM_NAMES
    version = VERSION
    timeout = 300

    def setup(self, estimator: str, backend: str, problem: str, L: str) -> None:
        if not backend.endswith(":cpu"):
            raise NotImplementedError("peakmem_ measures host RSS; device memory is not tracked")
        self.run = _cases.run_estimate(CATALOG, (estimator, backend, problem, L))

    def peakmem_estimate(self, estimator: str, backend: str, problem: str, L: str) -> None:
        self.run()
