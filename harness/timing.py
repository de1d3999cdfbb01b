"""Per-call wall-clock timing: warm-up, device sync inside the timed region, adaptive repeats.

``time_call`` runs ``fn`` once to measure the first-call (compile) time, warms up, picks an inner loop
count so one sample lasts >= ``min_sample_s``, then takes samples until the IQR/median falls below
``target_rel_iqr`` (after ``min_repeats``) or ``max_time_s`` is spent.  Each call is followed by
``sync(out)`` (``torch.cuda.synchronize`` / ``block_until_ready``) inside the timed region.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Timing:
    time_median_s: float
    time_iqr_s: float
    compile_time_s: float
    time_samples: int
    time_inner_loops: int
    first_call_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TimingConfig:
    warmup: int = 2
    min_repeats: int = 7
    max_repeats: int = 200
    target_rel_iqr: float = 0.05
    max_time_s: float = 1.0
    min_sample_s: float = 2e-4


def time_call(fn: Callable[[], Any], sync: Callable[[Any], None], cfg: TimingConfig | None = None) -> Timing:
    cfg = cfg or TimingConfig()
    clock = time.perf_counter
    t0 = clock()
    sync(fn())
    first = clock() - t0
    for _ in range(cfg.warmup):
        sync(fn())
    # calibrate the inner loop so a sample is long enough for the clock's resolution
    t0 = clock()
    sync(fn())
    one = max(clock() - t0, 1e-7)
    number = max(1, int(np.ceil(cfg.min_sample_s / one)))
    samples: list[float] = []
    start = clock()
    while len(samples) < cfg.max_repeats:
        t0 = clock()
        for _ in range(number):
            sync(fn())
        samples.append((clock() - t0) / number)
        if len(samples) >= cfg.min_repeats:
            q1, med, q3 = np.percentile(samples, [25, 50, 75])
            if (q3 - q1) <= cfg.target_rel_iqr * med or clock() - start > cfg.max_time_s:
                break
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return Timing(
        time_median_s=float(med),
        time_iqr_s=float(q3 - q1),
        compile_time_s=float(max(first - med, 0.0)),
        time_samples=len(samples),
        time_inner_loops=number,
        first_call_s=float(first),
    )
