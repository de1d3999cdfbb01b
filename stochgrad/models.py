"""Bring your own model in a few lines: a PyTorch or JAX model and its data, registered as a workload.

The result is a registered :class:`~stochgrad.Workload` like the built-in VAEs: suites name it
(``[[sweep.workloads]] name = ...``), ``stochgrad train`` trains it on a backend with a training engine, and the
report shows it.  Its checkpoint 0 is the weights given; later checkpoints are trained from them with the
latent's reference estimator (``disarm``, ``score_function_rloo``, ``pathwise``; ``train_estimator=`` overrides).
Registering again under the same name replaces the earlier model (a re-run notebook cell); a built-in's name is
refused.  The subclass route (:class:`~stochgrad.Workload` + :func:`~stochgrad.register_workload`) stays for full
control (a NumPy path, data preparation, configuration keys of your own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.workloads import Workload, register_workload
from harness.workloads.from_jax import workload_from_jax as _from_jax
from harness.workloads.from_torch import workload_from_torch as _from_torch


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
) -> Workload:
    """Register a PyTorch model as the workload ``name`` and return it.

    Args:
        name: the workload's name in suites (an identifier).
        encoder: an ``nn.Module``, x → the latent distribution's parameters for the batch: ``logits`` [N, *shape]
            (bernoulli, categorical), or ``(loc, scale)`` [N, D] each (normal; scale > 0), as one tensor, a tuple
            in that order or a dict by name.  Its parameters are the encoder weights the estimators' gradients
            reach.
        log_joint: log p(x, z) per example, ``(z, x) -> [..., N]`` for z [..., N, *shape]: an ``nn.Module``
            (its parameters are the decoder weights, trained by ``stochgrad train``) or a function (whatever it
            uses stays fixed).  Estimators call it at float64 or float32 tensors, possibly with relaxed
            (non-binary) z.
        data: ``{"train": ..., "val": ..., "test": ...}``, each an array [n, ...], a dict of arrays (the model
            then receives a dict) or a map-style torch ``Dataset`` (items: a tensor, a tuple of tensors, or a dict).
        latent: ``bernoulli``, ``categorical`` or ``normal``.
        shape: the per-example latent shape: D (or (D,)); (G, K) for G groups of K categories.
        config: defaults of the training keys (``lr``, ``train_batch``, ``train_samples``, ``train_seed``,
            ``init_seed``, ``reference_samples``), which suites may also set per workload table.
        train_estimator: the estimator that trains the checkpoints (default by latent, see above).
        reinit: start from freshly initialized weights (``reset_parameters``, seeded by ``init_seed`` for the
            checkpoints and by the seed of a training run) instead of the modules' current weights.
        differentiable: log_joint is differentiable in z (pathwise and relaxed estimators apply).
        doc: one line for ``stochgrad list`` and the report.

    Raises:
        WorkloadError: bad input, naming the argument; the model is called once on two training examples, so a
            wrong output shape is reported here rather than as failed cells.
    """
    return register_workload(
        _from_torch(
            name,
            encoder,
            log_joint,
            data,
            latent,
            shape,
            config=config,
            train_estimator=train_estimator,
            reinit=reinit,
            differentiable=differentiable,
            doc=doc,
        )
    )


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
) -> Workload:
    """Register a JAX model (pure functions and parameter pytrees) as the workload ``name`` and return it.

    Args:
        name: the workload's name in suites (an identifier).
        encode: ``(encoder_params, x) -> latent parameters``, as for :func:`workload_from_torch` (a flax module's
            ``apply``; for equinox ``lambda p, x: eqx.combine(p, static)(x)``).
        log_joint: ``(decoder_params, z, x) -> [..., N]`` for z [..., N, *shape].
        data: ``{"train": ..., "val": ..., "test": ...}``, each an array [n, ...] or a dict of arrays.
        latent: ``bernoulli``, ``categorical`` or ``normal``.
        shape: the per-example latent shape: D (or (D,)); (G, K) for G groups of K categories.
        encoder_params: the encoder's parameter pytree (floating-point leaves; flax ``variables``, equinox's
            array partition, a dict).
        decoder_params: log_joint's parameter pytree (None: it has none).
        config: defaults of the training keys, as for :func:`workload_from_torch`.
        train_estimator: the estimator that trains the checkpoints (default by latent).
        differentiable: log_joint is differentiable in z.
        doc: one line for ``stochgrad list`` and the report.

    Raises:
        WorkloadError: bad input, naming the argument (the model is called once on two training examples).

    Its cells run on jax.  Checkpoints after step 0 and ``stochgrad train`` need a JAX training engine; without
    one they are refused with a message naming the engines there are.
    """
    return register_workload(
        _from_jax(
            name,
            encode,
            log_joint,
            data,
            latent,
            shape,
            encoder_params=encoder_params,
            decoder_params=decoder_params,
            config=config,
            train_estimator=train_estimator,
            differentiable=differentiable,
            doc=doc,
        )
    )
