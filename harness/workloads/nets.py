"""Small multilayer perceptrons written once for NumPy, PyTorch and JAX, with NumPy backward passes.

A network is a list of layers stored in a flat parameter dict: ``{prefix}W{i}`` [in, out] and ``{prefix}b{i}``
[out]; hidden layers use tanh.  ``forward`` is written once against the array API standard (the namespace of its
input, ``array_api_compat.array_namespace``), so the same code runs on NumPy, PyTorch and JAX arrays
(``x @ W + b`` broadcasts over leading axes);
``input_grad_np`` and ``weight_vjp_np`` are the explicit NumPy chain rules used by the analytic NumPy paths
(``grad_np`` of the objective, the encoder chain rule on the numpy backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace

Array = Any


def init_mlp(rng: np.random.Generator, sizes: Sequence[int], prefix: str) -> dict[str, np.ndarray]:
    """Glorot-uniform weights, zero biases, for layer sizes [in, hidden..., out]."""
    out: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lim = np.sqrt(6.0 / (a + b))
        out[f"{prefix}W{i}"] = rng.uniform(-lim, lim, size=(a, b))
        out[f"{prefix}b{i}"] = np.zeros(b)
    return out


def mlp_shapes(sizes: Sequence[int], prefix: str) -> dict[str, tuple[int, ...]]:
    """The shapes :func:`init_mlp` gives, without allocating anything."""
    out: dict[str, tuple[int, ...]] = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        out[f"{prefix}W{i}"] = (a, b)
        out[f"{prefix}b{i}"] = (b,)
    return out


def n_layers(params: Mapping[str, Any], prefix: str) -> int:
    n = 0
    while f"{prefix}W{n}" in params:
        n += 1
    return n


def forward(params: Mapping[str, Array], prefix: str, x: Array) -> Array:
    """The network's output for inputs x [..., in] (tanh hidden layers, linear output), on x's array namespace."""
    xp = array_namespace(x)
    n = n_layers(params, prefix)
    h = x
    for i in range(n):
        h = h @ params[f"{prefix}W{i}"] + params[f"{prefix}b{i}"]
        if i < n - 1:
            h = xp.tanh(h)
    return h


def _acts_np(params: Mapping[str, np.ndarray], prefix: str, x: np.ndarray) -> list[np.ndarray]:
    """Inputs of every layer (x, then each tanh activation)."""
    n = n_layers(params, prefix)
    acts = [x]
    for i in range(n - 1):
        acts.append(np.tanh(acts[-1] @ params[f"{prefix}W{i}"] + params[f"{prefix}b{i}"]))
    return acts


def input_grad_np(params: Mapping[str, np.ndarray], prefix: str, x: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """∂/∂x of Σ gy · forward(x), for x [..., in] and output cotangent gy [..., out]."""
    acts = _acts_np(params, prefix, x)
    g = gy
    for i in reversed(range(len(acts))):
        g = g @ params[f"{prefix}W{i}"].T
        if i > 0:
            g = g * (1.0 - acts[i] ** 2)
    return g


def weight_vjp_np(params: Mapping[str, np.ndarray], prefix: str, x: np.ndarray, G: np.ndarray) -> dict[str, np.ndarray]:
    """Per-replicate weight gradients of ⟨G_r, forward(x)⟩: x [N, in] (fixed), G [R, N, out] -> [R, *w]."""
    acts = _acts_np(params, prefix, x)
    out: dict[str, np.ndarray] = {}
    g = G
    for i in reversed(range(len(acts))):
        out[f"{prefix}W{i}"] = np.einsum("ni,rno->rio", acts[i], g)
        out[f"{prefix}b{i}"] = g.sum(1)
        if i > 0:
            g = (g @ params[f"{prefix}W{i}"].T) * (1.0 - acts[i] ** 2)
    return out
