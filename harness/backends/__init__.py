"""Backend adapters, looked up by name.  Importing this never fails for a missing torch/jax."""

from __future__ import annotations

from functools import cache

from harness.backends.base import DTYPES, Backend, Noise, NumpySourcedNoise

BACKEND_NAMES = ("numpy", "torch", "jax")
AUTODIFF_BACKENDS = ("torch", "jax")  # differentiate f by autodiff; the others need an analytic ∂f/∂z


@cache
def get_backend(name: str) -> Backend:
    """The backend adapter ``name`` (``numpy``, ``torch`` or ``jax``), one per process.  Getting one never fails for a
    missing library: ``unavailable_reason()`` says why it cannot run."""
    if name == "numpy":
        from harness.backends.numpy_backend import NumpyBackend

        return NumpyBackend()
    if name == "torch":
        from harness.backends.torch_backend import TorchBackend

        return TorchBackend()
    if name == "jax":
        from harness.backends.jax_backend import JaxBackend

        return JaxBackend()
    raise ValueError(f"unknown backend {name!r}; valid: {list(BACKEND_NAMES)}")


def backend_status() -> dict[str, dict]:
    """Per backend: available or the reason it is not, and its devices."""
    out = {}
    for n in BACKEND_NAMES:
        b = get_backend(n)
        reason = b.unavailable_reason()
        out[n] = {"available": reason is None, "reason": reason, "devices": b.devices() if not reason else []}
    return out


__all__ = [
    "AUTODIFF_BACKENDS",
    "BACKEND_NAMES",
    "DTYPES",
    "Backend",
    "Noise",
    "NumpySourcedNoise",
    "backend_status",
    "get_backend",
]
