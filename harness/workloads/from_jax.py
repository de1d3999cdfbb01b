"""A JAX model as a workload: pure functions and their parameter pytrees (flax, equinox or plain dicts).

:func:`workload_from_jax` takes ``encode(encoder_params, x)`` → the latent distribution's parameters and
``log_joint(decoder_params, z, x)`` → [..., N], with the two parameter pytrees.  The pytrees' array leaves become
the workload's weights, named by their key paths (``enc.<path>``, ``dec.<path>``: ``jax.tree_util.keystr``), and
are put back into the pytrees' structure before every call, so checkpoints, the estimators' dtype and device and
the encoder chain rule (``jax.vjp`` + ``vmap``) pass their own arrays.  A flax module fits as
``encode = module.apply`` with ``variables = module.init(...)``; an equinox model as the array part of
``eqx.partition(model, eqx.is_array)`` with ``lambda p, x: eqx.combine(p, static)(x)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness.backends import get_backend
from harness.workloads.base import WorkloadError
from harness.workloads.functional import FunctionalWorkload, code_description, numpy_split, split_arrays

ENC, DEC = "enc.", "dec."


class Tree:
    """A parameter pytree's structure and the names of its array leaves (None leaves, e.g. equinox's, are kept)."""

    def __init__(self, tree: Any, prefix: str, where: str) -> None:
        import jax

        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(tree)
        self.names = [prefix + jax.tree_util.keystr(path) for path, _ in leaves]
        self.arrays = {}
        for name, (_, leaf) in zip(self.names, leaves):
            a = np.asarray(leaf)
            if not np.issubdtype(a.dtype, np.floating):
                raise WorkloadError(f"{where}{name[len(prefix) :]}", f"is not a floating-point array (dtype {a.dtype})")
            self.arrays[name] = a
        if len(set(self.names)) != len(self.names):
            raise WorkloadError(where, "has leaves with the same key path")

    def build(self, params: Mapping[str, Any]) -> Any:
        return self.treedef.unflatten([params[n] for n in self.names])


class JaxWorkload(FunctionalWorkload):
    """A workload whose encoder and log joint are pure JAX functions (built by :func:`workload_from_jax`)."""

    def __init__(self, encode: Callable, log_joint: Callable, enc: Tree, dec: Tree, **kw: Any) -> None:
        self.encode_fn, self.log_joint_fn, self.enc, self.dec = encode, log_joint, enc, dec
        super().__init__(**kw)

    def encode(self, B: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict:
        out = self.encode_fn(self.enc.build(params), self.batch(x))
        return self.eta(out, len(next(iter(x.values()))))

    def log_joint(self, B: Any, z: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> Any:
        return self.log_joint_fn(self.dec.build(params), z, self.batch(x))


def workload_from_jax(
    name: str,
    encode: Callable[[Any, Any], Any],
    log_joint: Callable[[Any, Any, Any], Any],
    data: Mapping[str, Any],
    latent: str,
    shape: int | tuple[int, ...],
    *,
    encoder_params: Any,
    decoder_params: Any = None,
    config: Mapping[str, Any] | None = None,
    train_estimator: str | None = None,
    differentiable: bool = True,
    doc: str = "",
) -> JaxWorkload:
    """A JAX model as a workload (not registered: :func:`harness.workloads.register_workload` does that)."""
    try:
        import jax.numpy as jnp
    except ImportError as e:
        raise WorkloadError("encode", f"workload_from_jax needs JAX, which is not installed ({e})") from None
    for arg, fn in (("encode", encode), ("log_joint", log_joint)):
        if not callable(fn):
            raise WorkloadError(arg, f"must be a function, got {fn!r}")
    splits, structure = split_arrays(data, "data", numpy_split)
    enc = Tree(encoder_params, ENC, "encoder_params")
    dec = Tree({} if decoder_params is None else decoder_params, DEC, "decoder_params")
    wl = JaxWorkload(
        encode,
        log_joint,
        enc,
        dec,
        name=name,
        latent=latent,
        shape=shape,
        splits=splits,
        structure=structure,
        weights={**enc.arrays, **dec.arrays},
        enc_keys=enc.names,
        backends=("jax",),
        config=config,
        train_estimator=train_estimator,
        differentiable=differentiable,
        doc=doc,
        code=f"jax|{code_description(encode)}|{code_description(log_joint)}|{enc.treedef}|{dec.treedef}",
    )
    B = get_backend("jax")
    t = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in wl.weights0.items()}
    x = {k: jnp.asarray(np.asarray(v[:2], np.float64)) for k, v in splits["train"].items()}
    wl.check_model(B, t, x)
    return wl
