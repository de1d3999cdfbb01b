"""The chain rule from η to the encoder weights φ, vectorized over replicates: Jφ(η)ᵀ G_r for every r.

Given R replicate η-gradients G {param: [R, *param shape]} of a :class:`WorkloadProblem`, return the encoder
gradients {weight: [R, *weight shape]}.  Backends: ``torch`` (``torch.func.vjp`` + ``vmap``), ``jax``
(``jax.vjp`` + ``vmap``), ``numpy`` (the workload's explicit ``encoder_vjp_np``; the shipped MLP encoders
and blr have one).  The map is linear and deterministic, so it is applied on the CPU in float64 to the
estimates (post-processing; its time is added to the encoder rows' time, see :mod:`harness.targets.workload`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.backends import get_backend
from harness.workloads.base import WorkloadError


def _per_example(problem: Any, G: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64).reshape(v.shape[0], problem.n, *problem.latent) for k, v in G.items()}


def encoder_grads(problem: Any, G: dict[str, np.ndarray], backend: str = "numpy") -> dict[str, np.ndarray]:
    """{weight: [R, *w]} = Jᵀ G_r for every replicate r."""
    wl, cfg = problem.workload, problem.cfg
    Gx = _per_example(problem, {k: G[k] for k in problem.param_names})
    if backend not in wl.backends:  # the map is linear post-processing: use a backend the model runs on
        backend = "torch" if "torch" in wl.backends else wl.backends[0]
    if backend == "numpy":
        if not wl.numpy_vjp:
            raise WorkloadError(
                "backend", f"{wl.name} has no NumPy encoder chain rule (encoder_vjp_np); use torch or jax"
            )
        out = wl.encoder_vjp_np(problem.state, problem.x, Gx, cfg)
        return {k: np.asarray(out[k], np.float64) for k in problem.encoder_params}
    if backend == "torch":
        return _torch(problem, Gx)
    if backend == "jax":
        return _jax(problem, Gx)
    raise WorkloadError("backend", f"unknown backend {backend!r}; valid: ['numpy', 'torch', 'jax']")


def _torch(problem: Any, Gx: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch
    from torch.func import vjp, vmap

    T = get_backend("torch")
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    fixed = {k: t(v) for k, v in problem.state.items() if k not in problem.encoder_params}
    x = {k: t(v) for k, v in problem.x.items()}
    enc = {k: t(v) for k, v in problem.encoder_params.items()}
    names = list(Gx)
    _, pull = vjp(lambda p: tuple(problem.workload.encode(T, {**fixed, **p}, x, problem.cfg)[k] for k in names), enc)
    (out,) = vmap(pull)(tuple(t(Gx[k]) for k in names))
    return {k: out[k].numpy() for k in problem.encoder_params}


def _jax(problem: Any, Gx: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import jax
    import jax.numpy as jnp

    J = get_backend("jax")
    t = lambda a: jnp.asarray(np.asarray(a), dtype=jnp.float64)  # noqa: E731
    fixed = {k: t(v) for k, v in problem.state.items() if k not in problem.encoder_params}
    x = {k: t(v) for k, v in problem.x.items()}
    enc = {k: t(v) for k, v in problem.encoder_params.items()}
    names = list(Gx)
    _, pull = jax.vjp(
        lambda p: tuple(problem.workload.encode(J, {**fixed, **p}, x, problem.cfg)[k] for k in names), enc
    )
    (out,) = jax.vmap(pull)(tuple(t(Gx[k]) for k in names))
    return {k: np.asarray(out[k]) for k in problem.encoder_params}


def flat(d: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """[R, Σ sizes]: the named arrays [R, ...] flattened and concatenated in ``names`` order."""
    return np.concatenate([d[k].reshape(d[k].shape[0], -1) for k in names], axis=1)


def jacobian(problem: Any) -> np.ndarray:
    """Jφ(η) as a dense [C_η, C_φ] matrix (one-hot cotangents; small workloads and truth errors only)."""
    names = problem.param_names
    sizes = [problem.params_np[k].size for k in names]
    C = sum(sizes)
    eye = np.eye(C)
    G, start = {}, 0
    for k, s in zip(names, sizes):
        G[k] = eye[:, start : start + s].reshape(C, *problem.params_np[k].shape)
        start += s
    return flat(
        encoder_grads(problem, G, "torch" if not problem.workload.numpy_vjp else "numpy"), list(problem.encoder_params)
    )
