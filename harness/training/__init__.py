"""Training: one workload × encoder-gradient estimator × seed × lr × backend × device unit, stepped to completion.

Modules: :mod:`~harness.training.spec` (what a unit is: its keys, identity hash, and what a step offers an
estimator), :mod:`~harness.training.step` (one step: the encoder by a registered estimator with the examples as
replicates, the decoder by exact autograd), :mod:`~harness.training.loop` (``train_unit``: Adam, online variance,
logging, resumable state).  Training suites are parsed by :mod:`harness.suite.training`; a training run directory
is written by :mod:`harness.runs.training_run`; offline variance at a unit's saved state is measured by
:mod:`harness.measure.offline` (see docs/notes/training.md).
"""

from __future__ import annotations

from harness.training.loop import train_unit
from harness.training.spec import TRAIN_KEYS, step_traits, unit_key

__all__ = ["TRAIN_KEYS", "step_traits", "train_unit", "unit_key"]
