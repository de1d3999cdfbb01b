"""Data shipped with scikit-learn (nothing is downloaded): digits and breast_cancer, split by seed.

Splits are a seeded permutation: 60% train, 20% validation, 20% test.  Digits are scaled to [0, 1]
(pixel / 16); breast_cancer features are standardized with the training split's mean and std.
"""

from __future__ import annotations

from functools import cache

import numpy as np

SPLITS = ("train", "val", "test")


def _split_idx(n: int, seed: int) -> dict[str, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(0.6 * n), int(0.8 * n)
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}


@cache
def _digits() -> np.ndarray:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the digits workloads need scikit-learn (pip install scikit-learn)") from exc
    return load_digits().data.astype(np.float64) / 16.0


@cache
def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as exc:  # pragma: no cover
        raise RuntimeError("the blr workload needs scikit-learn (pip install scikit-learn)") from exc
    d = load_breast_cancer()
    return d.data.astype(np.float64), d.target.astype(np.float64)


def digits(seed: int) -> dict[str, np.ndarray]:
    """{split: images [n, 64] in [0, 1]}."""
    x = _digits()
    return {k: x[v] for k, v in _split_idx(len(x), seed).items()}


def breast_cancer(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (X [n, 30] standardized with train statistics, y [n] in {0, 1})}."""
    X, y = _breast_cancer()
    idx = _split_idx(len(X), seed)
    mu, sd = X[idx["train"]].mean(0), X[idx["train"]].std(0)
    return {k: ((X[v] - mu) / sd, y[v]) for k, v in idx.items()}
