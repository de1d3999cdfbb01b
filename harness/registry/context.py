"""The estimator protocol's single argument: everything one call needs, on one backend.

An implementation is ``fn(ctx: Context) -> {param: array[R, *param_shape]}``: R independent L-sample gradient
estimates, vectorized over R.  ``ctx`` gives the backend adapter ``B``, the problem, the parameter values as
backend arrays, the noise source, L, R and the hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.backends import Backend, Noise
from harness.problems import Problem

Array = Any


@dataclass
class Context:
    """What an estimator receives.

    Attributes:
        B: the backend adapter (``B.xp`` is numpy, torch or jax.numpy; ``B.grad_batched``, ``B.stop_gradient``,
            ``B.log``, ``B.softplus``, ... read alike on every backend).
        problem: the problem (distribution with parameter values, objective, dimension, exact gradient).
        params: parameter values as backend arrays in their parameter shapes (no replicate axis), e.g.
            ``params["loc"]`` of shape ``[D]``.
        op: objective parameters (vectors as backend arrays).
        noise: the source of base randomness (``noise.normal(shape)``, ``uniform``, ``standard_gamma``, ``gumbel``);
            the same draws on every backend when the runner asks for identical noise.
        L: samples per estimate.  R: independent replicate estimates to return (vectorize over it).
        hyper: hyperparameter values, defaults filled in.
        dtype: ``"float64"`` or ``"float32"``.  device: the backend's device name (``cpu``, ``cuda:0``, ``gpu``).
    """

    B: Backend
    problem: Problem
    params: dict[str, Array]
    op: dict[str, Any]
    noise: Noise
    L: int
    R: int
    hyper: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float64"
    device: str = "cpu"

    @property
    def dist(self) -> Any:
        """The distribution object (``sample``, ``log_prob``, ``logpdf_elem``, ``score_np``, ...)."""
        return self.problem.dist

    @property
    def dim(self) -> int:
        """D, the number of independent sites."""
        return self.problem.dim

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one sample (``[D]``, or ``[D, K]`` for one-hot categoricals)."""
        return self.problem.event_shape

    def f(self, z: Array) -> Array:
        """Total cost f(z) over the event axes: [R, L, *event] -> [R, L]."""
        return self.problem.objective(self.B, z, self.op)

    def f_site(self, z: Array) -> Array:
        """Per-site cost g(z_site) of a separable objective: [R, L, *event] -> [R, L, D]."""
        return self.problem.objective.per_site(self.B, z, self.op)

    def f_grad(self, z: Array) -> Array:
        """∂f/∂z elementwise, analytically (NumPy estimators; autodiff backends differentiate :meth:`f`)."""
        grad = self.problem.objective.grad_np
        if grad is None:
            raise NotImplementedError(f"objective {self.problem.objective.name!r} has no analytic derivative")
        return grad(z, self.op)

    def batched(self) -> dict[str, Array]:
        """Parameters with a replicate axis [R, *shape]; differentiate w.r.t. these per replicate."""
        return self.B.expand_params(self.params, self.R)

    def sample(self, P: dict[str, Array] | None = None, L: int | None = None) -> Array:
        """L draws per replicate [R, L, *event], no gradient attached."""
        return self.dist.sample(self.B, self.noise, self.batched() if P is None else P, self.L if L is None else L)

    def log_prob(self, z: Array, P: dict[str, Array]) -> Array:
        """Joint log density [R, L] of samples z [R, L, *event] under batched parameters P [R, ...]."""
        return self.dist.log_prob(self.B, z, P)

    def exact_value(self) -> float:
        """E[f(z)] from the problem's ground truth (only for oracle baselines, declared ``oracle=True``)."""
        return self.problem.exact.value

    def with_(self, **kw: Any) -> Context:
        return replace(self, **kw)


def make_context(
    problem: Problem,
    B: Backend,
    *,
    L: int,
    R: int,
    noise: Noise | None,
    hyper: dict[str, Any] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
) -> Context:
    params = {k: B.asarray(v, dtype, device) for k, v in problem.params_np.items()}
    op = {k: (B.asarray(v, dtype, device) if isinstance(v, np.ndarray) else v) for k, v in problem.op.items()}
    return Context(B, problem, params, op, noise, L, R, dict(hyper or {}), dtype, device)  # type: ignore[arg-type]
