"""Training checkpoints: a workload trained with its declared reference estimator, cached on disk.

Training runs in PyTorch on the CPU in float64 with Adam (``lr`` from the config).  Step t draws its
minibatch (``train_batch`` examples of the train split), its data preparation (dynamic binarization) and its
estimator noise from ``numpy.random.default_rng([train_seed, t])``, so a checkpoint depends only on the
configuration and the step: resuming from a cached earlier checkpoint (weights *and* Adam moments are saved)
gives the same state as training straight through.

Estimators (each example's gradient uses its own f_b; the loss is the batch mean; the decoder gets the exact
autograd gradient of the sampled objective):

- ``pathwise`` (normal latents): z = loc + scale·ε, f differentiated through z (η fixed inside log q);
- ``disarm`` (Bernoulli): ½(f_b(b) − f_b(b̃))(b − b̃)σ(|η|) chained into the encoder by a surrogate ⟨g, η⟩;
- ``score_function_rloo`` (any latent, L = ``train_samples`` ≥ 2): leave-one-out baseline.

Cache: ``$STOCHGRAD_CACHE`` (default ``~/.cache/stochgrad/checkpoints``), one ``.npz`` per (workload,
configuration, step), keyed by a hash of all three, written atomically (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.workloads.base import Workload, WorkloadError

FORMAT = 1  # bump when training changes, so stale checkpoints are not reused
TRAINED_STEPS = {"count": 0}  # optimizer steps run in this process (tests check reuse with it)
_MEMO: dict[str, dict[str, np.ndarray]] = {}


def cache_dir() -> Path:
    return Path(os.environ.get("STOCHGRAD_CACHE") or Path.home() / ".cache" / "stochgrad" / "checkpoints")


def state_key(wl: Workload, cfg: Mapping[str, Any], step: int, kind: str = "state") -> str:
    """Hash of what the trained state depends on (measurement-only keys, e.g. reference_samples, excluded)."""
    cfg = {k: v for k, v in cfg.items() if k not in wl.eval_keys}
    blob = json.dumps(
        {"workload": wl.name, "config": dict(cfg), "step": step, "kind": kind, "format": FORMAT},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def path_for(wl: Workload, cfg: Mapping[str, Any], step: int, kind: str = "state") -> Path:
    return cache_dir() / f"{wl.name}-{kind}-{state_key(wl, cfg, step, kind)}.npz"


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write atomically: a crash never leaves a truncated file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _full(wl: Workload, cfg: Mapping[str, Any], step: int) -> dict[str, np.ndarray] | None:
    """The cached checkpoint (``p/`` weights, ``m/``, ``v/`` Adam moments), or None."""
    key = state_key(wl, cfg, step)
    if key not in _MEMO:
        got = load_npz(path_for(wl, cfg, step))
        if got is None:
            return None
        _MEMO[key] = got
    return _MEMO[key]


def load_state(wl: Workload, cfg: Mapping[str, Any], step: int) -> dict[str, np.ndarray]:
    """Model weights (float64 NumPy) after ``step`` training steps, training (and caching) if needed."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise WorkloadError("checkpoint", f"must be a non-negative integer, got {step!r}")
    full = _full(wl, cfg, step)
    if full is None:
        full = _train_to(wl, cfg, step)
    return {k[2:]: v for k, v in full.items() if k.startswith("p/")}


def _cached_steps(wl: Workload, cfg: Mapping[str, Any], below: int) -> int | None:
    """Largest cached step < ``below`` (checked among the steps this process or earlier runs saved)."""
    known = sorted({int(k.split("-step")[-1]) for k in _saved_index(wl, cfg)}, reverse=True)
    return next((s for s in known if s < below and path_for(wl, cfg, s).exists()), None)


def _index_path(wl: Workload, cfg: Mapping[str, Any]) -> Path:
    return cache_dir() / f"{wl.name}-index-{state_key(wl, cfg, -1, 'index')}.json"


def _saved_index(wl: Workload, cfg: Mapping[str, Any]) -> list[str]:
    p = _index_path(wl, cfg)
    try:
        return list(json.loads(p.read_text()))
    except (OSError, ValueError):
        return []


def _record(wl: Workload, cfg: Mapping[str, Any], step: int) -> None:
    p = _index_path(wl, cfg)
    names = sorted(set(_saved_index(wl, cfg)) | {f"{wl.name}-step{step}"})
    fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(names, fh)
    os.replace(tmp, p)


def _store(wl: Workload, cfg: Mapping[str, Any], step: int, full: dict[str, np.ndarray]) -> None:
    save_npz(path_for(wl, cfg, step), full)
    _record(wl, cfg, step)
    _MEMO[state_key(wl, cfg, step)] = full


def _train_to(wl: Workload, cfg: Mapping[str, Any], step: int) -> dict[str, np.ndarray]:
    from harness.workloads.train import train

    start = _cached_steps(wl, cfg, step)
    if start is None:
        init = {
            f"p/{k}": np.asarray(v, np.float64)
            for k, v in wl.init_params(cfg, np.random.default_rng(cfg.get("init_seed", 0))).items()
        }
        _store(wl, cfg, 0, init)
        start, full = 0, init
    else:
        full = _full(wl, cfg, start) or {}
    if step == start:
        return full
    full = train(wl, cfg, full, start, step)
    TRAINED_STEPS["count"] += step - start
    _store(wl, cfg, step, full)
    return full
