"""Training: the one training loop — workload × encoder-gradient estimator × seed × lr × backend × device.

Modules: :mod:`~harness.training.unit` (a unit: keys, identity), :mod:`~harness.training.spec` (suite ``[[train]]``
tables → units, with :mod:`~harness.training.limits`; the only module here that reads suite files), :mod:`~harness.training.step` (one step: the encoder by a registered estimator with
the examples as replicates, the decoder by exact autograd), :mod:`~harness.training.engine` (what a backend provides:
model, gradients, optimizer; PyTorch: :mod:`~harness.training.torch_engine`), :mod:`~harness.training.loop`
(``Trainer``, ``train_unit``: online variance, logging, resumable state through :mod:`~harness.training.state`),
:mod:`~harness.training.checkpoints` (workload checkpoints: the same loop with the workload's reference estimator,
cached).  Training *runs* (the run directory, executors) are :mod:`harness.runs.training_run`.
"""

from __future__ import annotations

from harness.training.loop import Trainer, train_unit
from harness.training.unit import unit_key

__all__ = ["Trainer", "train_unit", "unit_key"]
