"""Training runs: workload × encoder-gradient estimator × seed × lr × backend × device, with curves and summaries.

``stochgrad train SUITE --out DIR`` (see docs/notes/training.md).  Modules: :mod:`~harness.training.spec`
(suite ``[[train]]`` tables → JSON-able units), :mod:`~harness.training.step` (one step: the encoder by a
registered estimator with the examples as replicates, the decoder by exact autograd),
:mod:`~harness.training.loop` (``train_unit``: Adam, online variance, logging, resumable state),
:mod:`~harness.training.run` (the run directory, a pluggable ``runner``, ``curves.parquet`` /
``results.parquet``), :mod:`~harness.training.offline` (offline variance at a saved state).
"""

from __future__ import annotations

from harness.training.loop import train_unit
from harness.training.run import run_training, sequential, write_tables
from harness.training.spec import load_train_suite, unit_key

__all__ = ["load_train_suite", "run_training", "sequential", "train_unit", "unit_key", "write_tables"]
