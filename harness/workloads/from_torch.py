"""A PyTorch model as a workload: an encoder ``nn.Module`` and a ``log_joint(z, x)`` module or function.

:func:`workload_from_torch` reads the modules' parameters into the workload's weights (``enc.<name>``,
``dec.<name>``) and calls the modules with the harness's tensors through ``torch.func.functional_call``, so
checkpoints, the estimators' dtype and device and the encoder chain rule (vmap + vjp) swap in their own weights;
the modules themselves are never modified.  Data: ``{split: array | dict of arrays | torch Dataset}``; a Dataset
is read once, as a ``DataLoader`` would batch it (``torch.utils.data.default_collate``: items that are tensors
give one array, dicts of tensors a dict).  torch is imported only when a model is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness.backends import get_backend
from harness.workloads.base import WorkloadError
from harness.workloads.functional import (
    FunctionalWorkload,
    Split,
    as_array,
    code_description,
    numpy_split,
    split_arrays,
    tuple_keys,
)

ENC, DEC = "enc.", "dec."


def _sub(params: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def torch_split(item: Any, where: str) -> Split:
    """One split: a torch ``Dataset`` (collated whole, as a DataLoader batch) or what :func:`numpy_split` reads."""
    from torch.utils.data import DataLoader, Dataset

    if not isinstance(item, Dataset):
        return numpy_split(item, where)
    try:
        n = len(item)  # type: ignore[arg-type]
    except TypeError:
        raise WorkloadError(
            where, "is a Dataset without a length (an IterableDataset); give a map-style Dataset"
        ) from None
    if n < 1:
        raise WorkloadError(where, "is an empty Dataset")
    batch = next(iter(DataLoader(item, batch_size=n, shuffle=False)))
    if isinstance(batch, tuple | list):  # items (x,) or (x, y, ...): TensorDataset, torchvision's (image, label)
        if len(batch) == 1:
            return numpy_split(batch[0], where)
        keys = tuple_keys(len(batch))
        return {k: as_array(v, f"{where}[{i}]") for i, (k, v) in enumerate(zip(keys, batch))}, "tuple"
    return numpy_split(batch, where)


class TorchWorkload(FunctionalWorkload):
    """A workload whose encoder and log joint are PyTorch code (built by :func:`workload_from_torch`)."""

    def __init__(self, encoder: Any, log_joint: Any, reinit: bool, **kw: Any) -> None:
        self.encoder, self.log_joint_fn, self.reinit = encoder, log_joint, reinit
        super().__init__(**kw)

    def init_params(self, cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The modules' weights as given; with ``reinit``, freshly initialized (``reset_parameters`` of every
        submodule, torch seeded from ``rng``) on copies of the modules."""
        if not self.reinit:
            return super().init_params(cfg, rng)
        import copy

        import torch

        out = {}
        with torch.random.fork_rng():
            torch.manual_seed(int(rng.integers(2**31)))
            for prefix, mod in ((ENC, self.encoder), (DEC, self.log_joint_fn)):
                if not isinstance(mod, torch.nn.Module):
                    continue
                mod = copy.deepcopy(mod)
                for m in mod.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
                out.update({prefix + k: v.detach().cpu().double().numpy() for k, v in mod.named_parameters()})
        return out

    def encode(self, B: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict:
        from torch.func import functional_call

        out = functional_call(self.encoder, _sub(params, ENC), (self.batch(x),))
        return self.eta(out, len(next(iter(x.values()))))

    def log_joint(self, B: Any, z: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> Any:
        import torch
        from torch.func import functional_call

        if isinstance(self.log_joint_fn, torch.nn.Module):
            return functional_call(self.log_joint_fn, _sub(params, DEC), (z, self.batch(x)))
        return self.log_joint_fn(z, self.batch(x))


def workload_from_torch(
    name: str,
    encoder: Any,
    log_joint: Callable[[Any, Any], Any],
    data: Mapping[str, Any],
    latent: str,
    shape: int | tuple[int, ...],
    *,
    config: Mapping[str, Any] | None = None,
    train_estimator: str | None = None,
    reinit: bool = False,
    differentiable: bool = True,
    doc: str = "",
) -> TorchWorkload:
    """A PyTorch model as a workload (not registered: :func:`harness.workloads.register_workload` does that)."""
    try:
        import torch
    except ImportError as e:
        raise WorkloadError("encoder", f"workload_from_torch needs PyTorch, which is not installed ({e})") from None
    if not isinstance(encoder, torch.nn.Module):
        raise WorkloadError("encoder", f"must be a torch.nn.Module (x -> latent parameters), got {type(encoder)}")
    if not callable(log_joint):
        raise WorkloadError("log_joint", f"must be an nn.Module or a function (z, x) -> [..., N], got {log_joint!r}")
    splits, structure = split_arrays(data, "data", torch_split)
    weights = {ENC + k: v.detach().cpu().double().numpy() for k, v in encoder.named_parameters()}
    if isinstance(log_joint, torch.nn.Module):
        weights.update({DEC + k: v.detach().cpu().double().numpy() for k, v in log_joint.named_parameters()})
    wl = TorchWorkload(
        encoder,
        log_joint,
        bool(reinit),
        name=name,
        latent=latent,
        shape=shape,
        splits=splits,
        structure=structure,
        weights=weights,
        enc_keys=[k for k in weights if k.startswith(ENC)],
        backends=("torch",),
        config=config,
        train_estimator=train_estimator,
        differentiable=differentiable,
        doc=doc,
        code=f"torch|{code_description(encoder)}|{code_description(log_joint)}|reinit={bool(reinit)}",
    )
    B = get_backend("torch")
    t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in wl.weights0.items()}
    x = {k: torch.as_tensor(np.asarray(v[:2], np.float64)) for k, v in splits["train"].items()}
    wl.check_model(B, t, x)
    return wl
