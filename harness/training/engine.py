"""What a training backend provides: an :class:`Engine` (model, gradients, held-out bounds) and an :class:`Optimizer`.

The training loop (:mod:`harness.training.loop`) is backend-neutral: it draws minibatches and noise in NumPy,
schedules refits of fitted estimators, logs curves and saves state.  Everything that touches device arrays is an
engine's job; an engine for a backend is registered in :data:`ENGINES` (module path, class name) and imported only
when a unit asks for that backend, so the backend stays optional.  PyTorch: :mod:`harness.training.torch_engine`
(``torch.optim.Adam``); JAX: :mod:`harness.training.jax_engine` (``optax.adam``), with the same state layout.

State layout (what :meth:`Engine.arrays` returns and :meth:`Engine.restore` takes, all NumPy): ``p/<name>`` model
weights, ``am/<name>`` / ``av/<name>`` the optimizer's first and second moments, ``em/<name>`` / ``es/<name>`` the
online-variance EMAs of the encoder gradient and of its square.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Array = Any
# backend -> (module, class) of its engine
ENGINES: dict[str, tuple[str, str]] = {
    "torch": ("harness.training.torch_engine", "TorchEngine"),
    "jax": ("harness.training.jax_engine", "JaxEngine"),
}
OPTIMIZERS = ("adam",)


@dataclass(frozen=True)
class UnitSetup:
    """What an engine needs to know about its unit (built by the loop from the unit dict)."""

    workload: Any  # the Workload
    cfg: dict[str, Any]  # its resolved configuration
    dist: Any  # the latent distribution
    estimator: Any  # the registered implementation on this backend (harness.registry.Implementation)
    hyper: dict[str, Any]  # its hyperparameters, defaults filled in
    multi: bool  # the estimator targets the K-sample bound (K = n_samples): train on that bound
    enc_keys: tuple[str, ...]  # encoder weight names
    n_samples: int
    lr: float
    ema_decay: float
    dtype: str
    device: str


class Optimizer(Protocol):
    """One optimizer's state for one unit: apply gradients, export and import the moments (state layout above)."""

    def apply(self, params: dict[str, Array], grads: Mapping[str, Array | None]) -> dict[str, Array]:
        """One update; returns the new parameters (an in-place optimizer returns ``params`` itself)."""
        ...

    def arrays(self) -> dict[str, np.ndarray]:
        """``am/<name>``, ``av/<name>`` (absent before the first update)."""
        ...

    def restore(self, arrays: Mapping[str, np.ndarray], step: int) -> None:
        """Moments from :meth:`arrays` after ``step`` updates."""
        ...


# (x [device arrays], () -> η [device arrays]) -> the problem fitting estimators read (see harness.training.step);
# η is asked for only when the problem is rebuilt (a refit step), so a compiled step need not hand it out every step
ProblemFor = Callable[[dict[str, Array], Callable[[], dict[str, Array]]], Any]


class Engine(Protocol):
    """One training unit's model on a backend: weights, one training step, the online variance, held-out bounds."""

    def step(self, x: Mapping[str, np.ndarray], rng: np.random.Generator, problem_for: ProblemFor) -> float:
        """One optimizer step on the prepared minibatch ``x`` (estimator and decoder noise from ``rng``); returns the
        batch's training objective (mean over examples)."""
        ...

    def grad_var(self, t: int) -> tuple[float, float]:
        """(mean over encoder weights of the bias-corrected EMA variance, mean of the squared EMA mean) after t steps."""
        ...

    def bound(self, x: Mapping[str, np.ndarray], K: int, seed: int, chunk: int) -> np.ndarray:
        """Per-example K-sample bound [N] (K = 1: the ELBO) on held-out data, fixed noise ``seed``, no gradients."""
        ...

    def weights(self) -> dict[str, np.ndarray]:
        """The model weights as float64 NumPy arrays."""
        ...

    def arrays(self) -> dict[str, np.ndarray]:
        """The whole state (layout in the module docstring)."""
        ...

    def restore(self, arrays: Mapping[str, np.ndarray], step: int) -> None: ...

    def sync(self) -> None:
        """Wait for the device (before and after a timed step)."""
        ...

    @property
    def compiled(self) -> bool:
        """Whether the steps run as one compiled function (JAX's jitted step)."""
        ...

    @property
    def eager_reason(self) -> str:
        """Why an engine that compiles its step runs it eagerly ("" when compiled, or for an eager engine)."""
        ...

    def compile_seconds(self) -> float:
        """Seconds the steps have spent compiling so far (0 for an engine that does not compile)."""
        ...

    def to_numpy(self, a: Array) -> np.ndarray:
        """A device array as NumPy."""
        ...


def engine_class(backend: str) -> type:
    """The engine class of ``backend`` (imported now); ValueError naming the valid backends."""
    if backend not in ENGINES:
        raise ValueError(f"training runs support {sorted(ENGINES)}, got {backend!r}")
    module, name = ENGINES[backend]
    return getattr(importlib.import_module(module), name)
