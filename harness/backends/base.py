"""Backend adapter protocol: arrays, RNG/noise, devices, synchronization and autodiff helpers.

Every estimator implementation talks to its backend only through a :class:`Backend` (``ctx.B``) and a
:class:`Noise` source (``ctx.noise``), so the same formula reads alike on NumPy, PyTorch and JAX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

Array = Any
DTYPES = ("float64", "float32")


def _nothing() -> None:
    return None


class PreparedCall(NamedTuple):
    """What :meth:`Backend.prepare_call` returns: ``run(seed)`` draws fresh noise; ``timed()`` reuses one noise
    source (the timing loop); ``ahead()`` does the call's compilation now without running it (JAX: trace, lower and
    compile; thread-safe, so it can overlap other work; nothing on eager backends), so its first call is a warm one."""

    run: Callable[[int], Any]
    timed: Callable[[], Any]
    ahead: Callable[[], None] = _nothing


class Noise:
    """Source of base randomness for one call.  Shapes are tuples; draws are in the context dtype."""

    def normal(self, shape: Sequence[int]) -> Array:
        raise NotImplementedError

    def uniform(self, shape: Sequence[int]) -> Array:
        """Uniform on the open interval (0, 1)."""
        raise NotImplementedError

    def standard_gamma(self, alpha: Array, shape: Sequence[int]) -> Array:
        """Gamma(alpha, 1) draws, ``alpha`` broadcast to ``shape``; no gradient attached."""
        raise NotImplementedError

    def gumbel(self, shape: Sequence[int]) -> Array:
        u = self.uniform(shape)
        return -self.B.log(-self.B.log(u))  # type: ignore[attr-defined]


class NumpySourcedNoise(Noise):
    """Draws with one NumPy generator and converts: identical base noise on every backend."""

    def __init__(self, rng: np.random.Generator, B: Backend, dtype: str, device: str) -> None:
        self.rng, self.B, self.dtype, self.device = rng, B, dtype, device

    def _conv(self, x: np.ndarray) -> Array:
        return self.B.asarray(x, self.dtype, self.device)

    def normal(self, shape: Sequence[int]) -> Array:
        return self._conv(self.rng.standard_normal(tuple(shape)))

    def uniform(self, shape: Sequence[int]) -> Array:
        u = self.rng.random(tuple(shape))
        tiny = np.finfo(self.dtype).tiny
        return self._conv(np.clip(u, tiny, 1.0 - np.finfo(self.dtype).epsneg))

    def standard_gamma(self, alpha: Array, shape: Sequence[int]) -> Array:
        a = np.broadcast_to(self.B.to_numpy(alpha).astype(np.float64), tuple(shape))
        return self._conv(self.rng.standard_gamma(a))


class Backend:
    """Base class of the three adapters; subclasses fill in the array-library specifics."""

    name = "base"
    xp: Any = np
    autodiff = False  # True: grad_batched and derivatives work (PyTorch, JAX)
    compiles = False  # True: calls can be compiled (jax.jit, torch.compile), so compile_time_s means something

    # -- availability and devices ---------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """None when the library imports, else why not."""
        return None

    def devices(self) -> list[str]:
        return ["cpu"]

    def device_error(self, device: str) -> str | None:
        """None when ``device`` can run here, else a reason naming the valid devices."""
        reason = self.unavailable_reason()
        if reason:
            return reason
        if device not in self.devices():
            return f"device {device!r} is not available for {self.name}; available: {self.devices()}"
        return None

    def device_names(self) -> dict[str, str]:
        return {}

    def versions(self) -> dict[str, str]:
        return {}

    def threads(self) -> dict[str, Any]:
        return {}

    # -- arrays ---------------------------------------------------------------------------
    def asarray(self, x: Any, dtype: str, device: str) -> Array:
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:
        raise NotImplementedError

    def sync(self, x: Any) -> None:
        """Block until the work producing ``x`` (a pytree of arrays) has finished."""

    def noise(self, seed: int, dtype: str, device: str) -> Noise:
        raise NotImplementedError

    def numpy_noise(self, rng: np.random.Generator, dtype: str, device: str) -> Noise:
        return NumpySourcedNoise(rng, self, dtype, device)

    # -- execution -----------------------------------------------------------------------
    def prepare_call(
        self,
        fn: Callable[[Any], Any],
        template: Any,
        *,
        jit: bool = True,
        compile_backend: str | None = None,
        trace_key: str | None = None,
    ) -> PreparedCall:
        """``(run, timed, ahead)`` for repeated calls of estimator ``fn`` on context ``template`` (noise left empty).

        ``run(seed)`` draws fresh noise from ``seed``; ``timed()`` reuses one noise source (the timing loop).
        JAX jit-compiles with the parameters, the objective's arrays, the fitted constants and the key as
        arguments, one compilation per ``trace_key`` (what the call is specialized to: estimator, problem shapes,
        L, R, hyperparameters, dtype, device); torch can wrap ``fn`` in ``torch.compile``."""
        noise0 = self.noise(12345, template.dtype, template.device)
        return PreparedCall(
            lambda seed: fn(self.private_inputs(template, self.noise(seed, template.dtype, template.device))),
            lambda: fn(self.private_inputs(template, noise0)),
        )

    def traces_once(self, *, jit: bool = True, compile_backend: str | None = None) -> bool:
        """Whether a call prepared by :meth:`prepare_call` runs the estimator's Python only when it traces (the first
        call), replaying a compiled program afterwards: then what the Python counts on that call holds for every call."""
        return False

    def private_inputs(self, template: Any, noise: Noise) -> Any:
        """The Context one call receives: ``template`` with ``noise`` and its own dicts of parameters, objective
        parameters and hyperparameters, so an estimator that rebinds entries cannot reach later calls (NumPy arrays
        are read-only views: :meth:`read_only`; JAX arrays are immutable; torch watches its tensors' version
        counters and fails a call that wrote into them, restoring them)."""
        return template.with_(
            params=dict(template.params), op=dict(template.op), hyper=dict(template.hyper), noise=noise
        )

    def read_only(self, x: Array) -> Array:
        """``x`` as an array the estimator cannot change in place (NumPy: a read-only view; JAX arrays are
        immutable; torch tensors cannot be locked: their version counters are watched per call)."""
        return x

    def compile_backend_error(self, name: str) -> str | None:
        """Why estimators on this backend cannot be wrapped in compiler backend ``name`` (None: they can)."""
        return f"the {self.name} backend has no compiler backends (torch.compile is for the torch backend)"

    def compilations(self) -> tuple[int, float] | None:
        """(compilations, seconds spent compiling) so far in this process, counted by the library's own compiler
        instrumentation; None where the backend compiles nothing it can count (NumPy; eager PyTorch)."""
        return None

    def grad_batched(self, surrogate: Callable[[dict], Array], params: dict[str, Array]) -> dict:
        """Per-replicate gradients of ``surrogate(P) -> [R]`` w.r.t. ``P`` of shape [R, *shape]."""
        raise NotImplementedError(f"{self.name} has no autodiff; write the gradient analytically")

    def derivatives(self, fn: Callable[[Array], Array], x: Array, order: int = 1) -> list[Array]:
        """``[∂ₓ Σ fn(x)]``, and with ``order=2`` also ``∂ₓ Σ ∂ₓ Σ fn(x)``, at ``x`` (no gradient attached).

        For ``fn`` a sum of independent per-sample terms the first is each sample's gradient; for an ``fn`` that acts
        on each entry separately (a separable objective) the second is the diagonal of its Hessian."""
        raise NotImplementedError(f"{self.name} has no autodiff; write the derivative analytically")

    def expand_params(self, params: dict[str, Array], R: int) -> dict[str, Array]:
        """Parameters broadcast to a leading replicate axis [R, *shape] (fresh arrays)."""
        raise NotImplementedError

    # -- math that differs between libraries ------------------------------------------------
    def stop_gradient(self, x: Array) -> Array:
        return x

    def lgamma(self, x: Array) -> Array:
        raise NotImplementedError

    def digamma(self, x: Array) -> Array:
        raise NotImplementedError

    def log_softmax(self, x: Array, axis: int = -1) -> Array:
        raise NotImplementedError

    def softmax(self, x: Array, axis: int = -1) -> Array:
        return self.xp.exp(self.log_softmax(x, axis))

    def sigmoid(self, x: Array) -> Array:
        raise NotImplementedError

    def log_sigmoid(self, x: Array) -> Array:
        """log(sigmoid(x)), stable for large |x|."""
        return -self.softplus(-x)

    def softplus(self, x: Array) -> Array:
        xp = self.xp
        return xp.maximum(x, 0 * x) + xp.log1p(xp.exp(-xp.abs(x)))

    def log(self, x: Array) -> Array:
        return self.xp.log(x)

    def exp(self, x: Array) -> Array:
        return self.xp.exp(x)

    def where(self, c: Array, a: Array, b: Array) -> Array:
        return self.xp.where(c, a, b)

    def one_hot(self, idx: Array, k: int, like: Array) -> Array:
        raise NotImplementedError

    def argmax(self, x: Array, axis: int = -1) -> Array:
        return x.argmax(axis)

    def sum(self, x: Array, axis: int | tuple[int, ...]) -> Array:
        return x.sum(axis)

    def mean(self, x: Array, axis: int | tuple[int, ...]) -> Array:
        return x.mean(axis)

    def zeros_like(self, x: Array) -> Array:
        return self.xp.zeros_like(x)

    def stack(self, xs: Sequence[Array], axis: int = 0) -> Array:
        return self.xp.stack(list(xs), axis)

    def concat(self, xs: Sequence[Array], axis: int = 0) -> Array:
        return self.xp.concatenate(list(xs), axis)

    # -- special functions for truncated normal, mixtures and gamma reparameterization ---------
    def ndtr(self, x: Array) -> Array:
        """Standard normal CDF Φ(x)."""
        raise NotImplementedError

    def ndtri(self, p: Array) -> Array:
        """Inverse standard normal CDF Φ⁻¹(p)."""
        raise NotImplementedError

    def log_ndtr(self, x: Array) -> Array:
        """log Φ(x), accurate far into the left tail."""
        raise NotImplementedError

    def logsumexp(self, x: Array, axis: int = -1) -> Array:
        """log Σ exp(x) along ``axis`` (axis removed), stable for large |x|."""
        raise NotImplementedError

    def i0e(self, x: Array) -> Array:
        """Exponentially scaled modified Bessel function e^{-|x|} I_0(x)."""
        raise NotImplementedError

    def i1e(self, x: Array) -> Array:
        """Exponentially scaled modified Bessel function e^{-|x|} I_1(x)."""
        raise NotImplementedError

    def log_i0(self, x: Array) -> Array:
        """log I_0(x) for x >= 0, stable for large x (log i0e(x) + x); differentiable on autodiff backends."""
        return self.log(self.i0e(x)) + x
