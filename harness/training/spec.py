"""What a training unit is: its keys with their defaults, its identity hash, and what a training step offers.

A unit is a JSON-able dict — workload × encoder-gradient estimator × seed × lr × backend × device plus the scalar
settings of :data:`TRAIN_KEYS` — built from a training suite's ``[[train]]`` tables by
:mod:`harness.suite.training` and trained by :func:`harness.training.loop.train_unit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from harness.problems.target import Traits
from harness.workloads.base import Workload

TRAIN_BACKENDS = ("torch",)
TRAIN_KEYS: dict[str, Any] = {
    "workload": None,  # required: a registered workload name
    "config": {},  # workload configuration (model size etc.; its training keys lr/train_* are not used here)
    "estimators": None,  # required: names or fnmatch patterns of registered estimators
    "hyper": {},  # {estimator: {hyperparameter: value}}
    "seeds": [0],  # training seeds (init, minibatches, noise)
    "lr": [1e-3],  # Adam learning rates (encoder and decoder)
    "backends": ["torch"],
    "devices": ["cpu"],
    "dtype": "float64",
    "steps": 1000,
    "batch_size": 32,
    "n_samples": 2,  # L per example (K of the multi-sample bound for vimco / dreg / iwae_pathwise)
    "log_every": 50,  # a curves row (and a saved state) every k steps
    "ema_decay": 0.99,  # online gradient variance: EMAs of g and g² (DisARM uses 0.999)
    "val_size": 200,  # held-out ELBO on the first val_size validation examples (0: all)
    "val_samples": 1,  # samples per example of the held-out ELBO
    "test_samples": 100,  # K of the final importance-weighted bound on the test split
    "test_size": 0,  # test examples (0: all)
    "refit_every": 100,  # steps between refits of fitted control variates (REBAR/RELAX)
    "fixed_batch": False,  # train on one fixed minibatch (diagnostics: online variance without data noise)
}


def unit_key(unit: Mapping[str, Any]) -> str:
    """Identity hash of a training unit (everything but where its state lives)."""
    ident = {k: v for k, v in unit.items() if k not in ("state_path",)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_traits(wl: Workload) -> Traits:
    """What a training step on ``wl`` offers an estimator (read by the registry's matcher): the model's traits,
    plus the K-sample importance-weighted bound (an estimator declaring ``multi_sample_bound`` trains on it, see
    :mod:`harness.training.step`), minus an exact E[f] (a training batch has no truth, so oracles cannot train)."""
    return dataclasses.replace(wl.traits(), multi_sample_bound=True, exact_value=False)
