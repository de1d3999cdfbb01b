"""A training unit: the JSON-able dict the loop trains (its keys with defaults) and its identity hash.

A unit is workload × estimator × seed × lr × backend × device with every scalar setting of its ``[[train]]`` table
(:mod:`harness.training.spec` builds them from a suite; :mod:`harness.training.checkpoints` builds the checkpoint
chain of a workload).  ``unit_key`` hashes everything but where its state lives: resume checks and file names use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

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
    "refit_every": 100,  # steps between refits of fitted estimators (those declaring state, e.g. REBAR/RELAX)
    "fixed_batch": False,  # train on one fixed minibatch (diagnostics: online variance without data noise)
}
SWEEP = ("estimators", "seeds", "lr", "backends", "devices")
POSITIVE = ("steps", "batch_size", "n_samples", "log_every", "val_samples", "test_samples", "refit_every")


def unit_key(unit: Mapping[str, Any]) -> str:
    """Identity hash of a training unit (everything but where its state lives)."""
    ident = {k: v for k, v in unit.items() if k not in ("state_path",)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
