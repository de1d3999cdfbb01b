"""Data sets that ship with stochgrad's built-in workloads (scikit-learn's, nothing is downloaded), for the models
you bring: ``digits(seed)`` (8×8 images scaled to [0, 1], ``{split: [n, 64]}``) and ``breast_cancer(seed)``
(standardized features and labels, ``{split: (X, y)}``), split 60/20/20 into ``train``, ``val``, ``test`` by a
seeded permutation."""

from __future__ import annotations

from harness.workloads.data import SPLITS, breast_cancer, digits

__all__ = ["SPLITS", "breast_cancer", "digits"]
