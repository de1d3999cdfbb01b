"""NumPy backend: float64 reference implementations with gradients written out analytically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special

from harness.backends.base import Array, Backend, Noise


class NumpyNoise(Noise):
    def __init__(self, rng: np.random.Generator, dtype: str, B: Backend) -> None:
        self.rng, self.dtype, self.B = rng, np.dtype(dtype), B

    def normal(self, shape: Sequence[int]) -> Array:
        return self.rng.standard_normal(tuple(shape), dtype=self.dtype)

    def uniform(self, shape: Sequence[int]) -> Array:
        u = self.rng.random(tuple(shape), dtype=self.dtype)
        return np.clip(u, np.finfo(self.dtype).tiny, 1.0 - np.finfo(self.dtype).epsneg)

    def standard_gamma(self, alpha: Array, shape: Sequence[int]) -> Array:
        a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), tuple(shape))
        return self.rng.standard_gamma(a).astype(self.dtype)


class NumpyBackend(Backend):
    name = "numpy"
    xp = np

    def versions(self) -> dict[str, str]:
        import scipy

        return {"numpy": np.__version__, "scipy": scipy.__version__}

    def threads(self) -> dict[str, Any]:
        """NumPy ufuncs are single-threaded; BLAS pools follow these variables (read when numpy loads)."""
        out: dict[str, Any] = {
            k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        }
        try:
            from threadpoolctl import threadpool_info

            out["numpy_blas_threads"] = {d.get("internal_api"): d.get("num_threads") for d in threadpool_info()}
        except ImportError:
            pass
        return out

    def asarray(self, x: Any, dtype: str, device: str) -> Array:
        return np.asarray(x, dtype=dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def read_only(self, x: Array) -> Array:
        if not isinstance(x, np.ndarray):
            return x
        out = x.view()  # a view: no copy, and the problem's own array stays as it was
        out.setflags(write=False)
        return out

    def noise(self, seed: int, dtype: str, device: str) -> Noise:
        return NumpyNoise(np.random.default_rng(seed), dtype, self)

    def expand_params(self, params: dict[str, Array], R: int) -> dict[str, Array]:
        return {k: np.broadcast_to(v, (R, *np.shape(v))).copy() for k, v in params.items()}

    def lgamma(self, x: Array) -> Array:
        return special.gammaln(x)

    def digamma(self, x: Array) -> Array:
        return special.digamma(x)

    def log_softmax(self, x: Array, axis: int = -1) -> Array:
        return special.log_softmax(x, axis=axis)

    def sigmoid(self, x: Array) -> Array:
        return special.expit(x)

    def softplus(self, x: Array) -> Array:
        return np.logaddexp(0.0, x)

    def one_hot(self, idx: Array, k: int, like: Array) -> Array:
        return (idx[..., None] == np.arange(k)).astype(like.dtype)

    def ndtr(self, x: Array) -> Array:
        return special.ndtr(x)

    def ndtri(self, p: Array) -> Array:
        return special.ndtri(p)

    def log_ndtr(self, x: Array) -> Array:
        return special.log_ndtr(x)

    def logsumexp(self, x: Array, axis: int = -1) -> Array:
        return special.logsumexp(x, axis=axis)

    def i0e(self, x: Array) -> Array:
        return special.i0e(x)

    def i1e(self, x: Array) -> Array:
        return special.i1e(x)
