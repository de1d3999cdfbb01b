"""Bring your own model: a small PyTorch VAE (``torch.nn`` modules) registered as a workload through ``stochgrad``.

This is the subclass route, for full control (configuration keys, data preparation, analytic NumPy paths); the
same model in a few lines is ``sg.workload_from_torch(name, encoder, log_joint, data, latent, shape)`` (README,
"Bring your own model").

The end-to-end example of docs/workloads.md and docs/notes/workloads.md, run as written by
tests/test_workloads.py (``test_byo_workload_registered_through_the_api``).  It imports only ``stochgrad`` (and
torch, numpy).  The model is ordinary
PyTorch: two ``nn.Sequential`` networks whose weights live in the workload state as NumPy arrays and are
applied with ``torch.func.functional_call``, so the harness can swap in its own tensors (checkpoints, the
estimators' dtype and device, vmap+vjp for the encoder chain rule).  It declares ``backends = ("torch",)``:
its cells run on torch (cpu and cuda) and are not expanded for numpy or jax.

Use::

    import stochgrad as sg
    from byo_workload import TinyBernoulliModel
    sg.register_workload(TinyBernoulliModel)       # or an entry point in the group "stochgrad.workloads"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np

import stochgrad as sg


@cache
def _modules(latent_dim: int, hidden: int) -> tuple[Any, Any]:
    import torch
    from torch import nn

    enc = nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, latent_dim)).to(torch.float64)
    dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, 64)).to(torch.float64)
    return enc, dec


def _sub(params: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class TinyBernoulliModel(sg.Workload):
    name = "tiny_bernoulli"
    latent = "bernoulli"
    backends = ("torch",)
    defaults = {
        "latent_dim": 5,
        "hidden": 16,
        "data_seed": 0,
        "init_seed": 0,
        "train_seed": 0,
        "lr": 3e-3,
        "train_batch": 16,
        "train_samples": 1,
        "reference_samples": 4000,
    }
    train_estimator = "disarm"
    doc = "a user's PyTorch VAE (nn.Sequential encoder/decoder) on binarized digits"

    def latent_shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (cfg["latent_dim"],)

    def dataset(self, cfg: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        return {k: {"x": (v > 0.5).astype(np.float64)} for k, v in sg.datasets.digits(cfg["data_seed"]).items()}

    def init_params(self, cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        import torch

        torch.manual_seed(int(rng.integers(2**31)))
        enc, dec = _modules(cfg["latent_dim"], cfg["hidden"])
        for m in (*enc, *dec):
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        out = {f"enc.{k}": v.detach().numpy().copy() for k, v in enc.state_dict().items()}
        out.update({f"dec.{k}": v.detach().numpy().copy() for k, v in dec.state_dict().items()})
        return out

    def encoder_keys(self, cfg: Mapping[str, Any]) -> list[str]:
        return [k for k in self.init_params(cfg, np.random.default_rng(0)) if k.startswith("enc.")]

    def encode(self, B: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict:
        from torch.func import functional_call

        enc, _ = _modules(cfg["latent_dim"], cfg["hidden"])
        return {"logits": functional_call(enc, _sub(params, "enc."), (x["x"],))}

    def log_joint(self, B: Any, z: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> Any:
        from torch.func import functional_call

        _, dec = _modules(cfg["latent_dim"], cfg["hidden"])
        logits = functional_call(dec, _sub(params, "dec."), (z,))
        return (x["x"] * logits - B.softplus(logits)).sum(-1) - cfg["latent_dim"] * math.log(2.0)
