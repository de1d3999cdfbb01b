"""What a training step offers an estimator, and the backends a training run supports.

A unit (its keys with their defaults and its identity hash) is :mod:`harness.training.unit`; units are built from a
training suite's ``[[train]]`` tables by :mod:`harness.suite.training` (the only module that reads training suite
files) and trained by :func:`harness.training.loop.train_unit`.  Which estimators can train a workload is the
registry's matcher (:func:`harness.registry.applies`) on :func:`step_traits`.
"""

from __future__ import annotations

import dataclasses

from harness.problems.target import Traits
from harness.training.engine import ENGINES
from harness.training.unit import POSITIVE, SWEEP, TRAIN_KEYS, unit_key
from harness.workloads.base import Workload

__all__ = ["POSITIVE", "SWEEP", "TRAIN_BACKENDS", "TRAIN_KEYS", "step_traits", "unit_key"]

TRAIN_BACKENDS = tuple(ENGINES)


def step_traits(wl: Workload) -> Traits:
    """What a training step on ``wl`` offers an estimator (read by the registry's matcher): the model's traits,
    plus the K-sample importance-weighted bound (an estimator declaring ``multi_sample_bound`` trains on it, see
    :mod:`harness.training.step`), minus an exact E[f] (a training batch has no truth, so oracles cannot train)."""
    return dataclasses.replace(wl.traits(), multi_sample_bound=True, exact_value=False)
