"""Training: the one training loop — workload × encoder-gradient estimator × seed × lr × backend × device.

Modules: :mod:`~harness.training.unit` (a unit: keys, identity), :mod:`~harness.training.spec` (what a training step
offers an estimator: :func:`step_traits` for the registry's matcher), :mod:`~harness.training.limits` (memory and
time limits of a unit), :mod:`~harness.training.step` (one step: the encoder by a registered estimator with the
examples as replicates, the decoder by exact autograd), :mod:`~harness.training.engine` (what a backend provides:
model, gradients, optimizer; PyTorch: :mod:`~harness.training.torch_engine`), :mod:`~harness.training.loop`
(``Trainer``, ``train_unit``: online variance, logging, resumable state through :mod:`~harness.training.state`),
:mod:`~harness.training.checkpoints` (workload checkpoints: the same loop with the workload's reference estimator,
cached).  Training suites are parsed by :mod:`harness.suite.training`; a training run directory is written by
:mod:`harness.runs.training_run`; offline variance at a unit's saved state is measured by
:mod:`harness.measure.offline` (see docs/notes/training.md).
"""

from __future__ import annotations

from harness.training.loop import Trainer, train_unit
from harness.training.spec import TRAIN_KEYS, step_traits
from harness.training.unit import unit_key

__all__ = ["TRAIN_KEYS", "Trainer", "step_traits", "train_unit", "unit_key"]
