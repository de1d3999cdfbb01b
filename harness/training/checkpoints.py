"""Workload checkpoints: a workload trained by the one training loop with its declared reference estimator, cached.

:func:`load_state` ``(workload, config, step)`` is the checkpoint provider that workload targets are built from: the
model weights after ``step`` optimizer steps.  A workload's checkpoints form one chain per configuration — a
training unit (:func:`chain_unit`) run by :class:`harness.training.loop.Trainer`, the same loop and step as
``stochgrad train``, with the estimator the workload declares as ``train_estimator`` through its registered
implementation:

- step 0 is ``init_params(config, numpy.random.default_rng(init_seed))``;
- step t draws its minibatch (``train_batch`` examples of the train split), its data preparation (dynamic
  binarization) and its estimator and decoder noise from ``numpy.random.default_rng([train_seed, 1, t])``;
- PyTorch on the CPU in float64 (a model that does not run on torch: the first of its backends with a training
  engine, :func:`chain_backend`), Adam with the configuration's ``lr``, L = ``train_samples`` per example;
- a model with no training engine at all still has its step 0 (its initial weights), nothing later.

Every checkpoint saves the whole trainer state (weights, Adam moments, EMAs, fits), so training on from a cached
earlier checkpoint gives the same state as training straight through.

Cache: ``$STOCHGRAD_CACHE`` (default ``~/.cache/stochgrad/checkpoints``), one checksummed ``.npz`` per (workload,
configuration without measurement-only keys, reference estimator, step), keyed by a hash of all four and
:data:`FORMAT`; a corrupt file is reported, moved aside and retrained (:mod:`harness.files.cache`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.files.atomic import atomic_write_json
from harness.files.cache import cache_dir
from harness.registry import applies, get_declaration
from harness.training.engine import ENGINES
from harness.training.spec import step_traits
from harness.training.state import read_state, save_state
from harness.training.unit import TRAIN_KEYS
from harness.workloads.base import Workload, WorkloadError

FORMAT = 2  # bump when training changes, so stale checkpoints are not reused; 2: trained by harness.training.loop
TRAINED_STEPS = {"count": 0}  # optimizer steps run in this process (tests check reuse with it)
CHAIN_KEYS = {  # unit keys of a checkpoint chain with the workload configuration key (and default) they come from
    "seed": ("train_seed", 0),
    "lr": ("lr", 1e-3),
    "batch_size": ("train_batch", 32),
    "n_samples": ("train_samples", 1),
}
_MEMO: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}  # key -> (trainer arrays, meta) in this process


def forget_memory() -> None:
    """Drop the checkpoints held in this process (the disk cache stays): what a new process would see."""
    _MEMO.clear()


def trained_config(wl: Workload, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration without measurement-only keys (``eval_keys``): what the trained state depends on."""
    return {k: v for k, v in cfg.items() if k not in wl.eval_keys}


def state_key(wl: Workload, cfg: Mapping[str, Any], step: int, kind: str = "state") -> str:
    """Hash of what the trained state depends on (measurement-only keys, e.g. reference_samples, excluded)."""
    blob = json.dumps(
        {
            "workload": wl.name,
            "config": trained_config(wl, cfg),
            "estimator": wl.train_estimator,
            "step": step,
            "kind": kind,
            "format": FORMAT,
            **({"model": wl.fingerprint} if wl.fingerprint else {}),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def path_for(wl: Workload, cfg: Mapping[str, Any], step: int) -> Path:
    return cache_dir() / f"{wl.name}-state-{state_key(wl, cfg, step)}.npz"


def chain_unit(wl: Workload, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The training unit whose steps are the workload's checkpoints (its ``steps`` is open: None)."""
    if not wl.train_estimator:
        raise WorkloadError("train_estimator", f"{wl.name} declares no reference estimator to train its checkpoints")
    cfg = dict(cfg)
    n_train = len(next(iter(wl.dataset(cfg)["train"].values())))
    unit = {k: v for k, v in TRAIN_KEYS.items() if k not in ("estimators", "seeds", "backends", "devices", "hyper")}
    unit.update(
        suite="checkpoints",
        workload=wl.name,
        config=dict(cfg),  # whole: measurement-only keys (data_dir: where the files are) are still needed to load data
        estimator=wl.train_estimator,
        hyper={},
        backend=chain_backend(wl),
        device="cpu",
        dtype="float64",
        steps=None,
        fixed_batch=False,
        **{k: type(d)(cfg.get(src, d)) for k, (src, d) in CHAIN_KEYS.items()},
    )
    unit["batch_size"] = min(int(unit["batch_size"]), n_train)
    ok, why = applies(get_declaration(unit["estimator"]), step_traits(wl), n_samples=int(unit["n_samples"]))
    if not ok:
        raise WorkloadError("train_estimator", f"{wl.train_estimator!r} cannot train {wl.name}: {why}")
    return unit


def chain_backend(wl: Workload) -> str:
    """The backend a workload's checkpoints are trained on: torch where the model runs on it, else the first of its
    backends with a training engine (WorkloadError naming both lists where there is none)."""
    usable = [b for b in wl.backends if b in ENGINES]
    if not usable:
        raise WorkloadError(
            "backends", f"{wl.name} runs on {list(wl.backends)}; training engines exist for {sorted(ENGINES)}"
        )
    return "torch" if "torch" in usable else usable[0]


def _index_path(wl: Workload, cfg: Mapping[str, Any]) -> Path:
    return cache_dir() / f"{wl.name}-index-{state_key(wl, cfg, -1, 'index')}.json"


def _saved_steps(wl: Workload, cfg: Mapping[str, Any]) -> list[int]:
    try:
        steps = json.loads(_index_path(wl, cfg).read_text())
        return sorted({int(s) for s in steps})
    except (OSError, ValueError, TypeError):
        return []


def _full(wl: Workload, cfg: Mapping[str, Any], step: int) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The cached trainer state (arrays, meta) after ``step`` steps, or None (a corrupt file is moved aside)."""
    key = state_key(wl, cfg, step)
    if key not in _MEMO:
        got = read_state(path_for(wl, cfg, step))
        if got is None or got[1].get("step") != step:
            return None
        _MEMO[key] = got
    return _MEMO[key]


def _store(wl: Workload, cfg: Mapping[str, Any], step: int, arrays: dict[str, np.ndarray], meta: dict) -> None:
    save_state(path_for(wl, cfg, step), arrays, meta)
    atomic_write_json(_index_path(wl, cfg), sorted(set(_saved_steps(wl, cfg)) | {step}))
    _MEMO[state_key(wl, cfg, step)] = (arrays, meta)


def load_state(wl: Workload, cfg: Mapping[str, Any], step: int) -> dict[str, np.ndarray]:
    """Model weights (float64 NumPy) after ``step`` training steps, training (and caching) if needed."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise WorkloadError("checkpoint", f"must be a non-negative integer, got {step!r}")
    if step == 0 and not any(b in ENGINES for b in wl.backends):  # no engine to build: step 0 is the initial state
        init = wl.init_params(cfg, np.random.default_rng(cfg.get("init_seed", 0)))
        return {k: np.asarray(v, np.float64) for k, v in init.items()}
    full = _full(wl, cfg, step)
    if full is None:
        full = _train_to(wl, cfg, step)
    return {k[2:]: np.asarray(v, np.float64) for k, v in full[0].items() if k.startswith("p/")}


def _train_to(wl: Workload, cfg: Mapping[str, Any], step: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from harness.training.loop import Trainer

    unit = chain_unit(wl, cfg)
    init = wl.init_params(cfg, np.random.default_rng(cfg.get("init_seed", 0)))
    trainer = Trainer(unit, init={k: np.asarray(v, np.float64) for k, v in init.items()})
    start = next((s for s in reversed(_saved_steps(wl, cfg)) if s <= step and _full(wl, cfg, s) is not None), None)
    if start is None:
        start = 0
        _store(wl, cfg, 0, trainer.engine.arrays(), trainer.meta())
    else:
        trainer.restore(*_full(wl, cfg, start))
    if step > start:
        trainer.advance(step)
        TRAINED_STEPS["count"] += step - start
        _store(wl, cfg, step, trainer.engine.arrays(), trainer.meta())
    got = _full(wl, cfg, step)
    assert got is not None
    return got
