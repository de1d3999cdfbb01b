"""The estimator protocol's single argument: everything one call needs, on one backend.

An implementation is ``fn(ctx: Context) -> {param: array[R, *param_shape]}``: R independent L-sample gradient
estimates, vectorized over R.  ``ctx`` gives the backend adapter ``B``, the problem, the parameter values as
backend arrays, the noise source, L, R and the hyperparameters.  Every evaluation of the objective and of its
derivatives goes through the Context (:meth:`Context.f`, ``f_site``, ``f_grad``, ``f_hess_diag``, and ``grad`` for
autodiff through f): built-in estimators and plugins alike, so the harness sees each one.

Cost is counted here, not declared: every such call adds to :attr:`Context.counts` (an :class:`EvalCounts`) the
points it evaluates, in units of one L-sample estimate (the rule is in :class:`EvalCounts` and
docs/notes/cost.md).  A plugin's cost is therefore right without the plugin saying anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from harness.backends import Backend, Noise
from harness.problems import Problem

Array = Any
EXACT_VALUE = "exact_value"  # the key of an oracle's exact E[f] in Context.fitted (see Context.exact_value)


@dataclass
class EvalCounts:
    """Evaluations counted through a Context, in units of one L-sample estimate.

    The rule (docs/notes/cost.md):

    * points: a call on ``z`` of shape ``[*lead, *event]`` evaluates ``n = prod(lead)`` points; the leading axis is
      the replicate axis, so one estimate's share is ``n / R`` — or all ``n`` when that axis is a broadcast 1 (points
      shared by every replicate, as enumeration's support points: each estimate needs all of them);
    * ``f`` (f_evals): points where the objective's value is computed: :meth:`Context.f`, :meth:`Context.f_site`
      (one point's D site terms are one evaluation of f), and the forward pass of every derivative below;
    * ``grad`` (grad_evals): points where ∂f/∂z (a backward pass, a VJP through f) is computed: :meth:`Context.f_grad`
      and :meth:`Context.f_and_grad` count 1 f + 1 grad per point on every backend (NumPy's analytic derivative
      counts as autodiff's forward + backward does, so backends agree); :meth:`Context.f_hess_diag` 1 f + 2 grad (two
      nested derivative passes); ``f`` evaluated while differentiating (inside :meth:`Context.grad`'s surrogate, or
      inside :meth:`Context.differentiating`) counts 1 f + 1 grad per point;
    * ``aux`` (aux_evals): points where a learned or fitted surrogate (RELAX's r_ρ, a plugin's network) is evaluated,
      reported by the implementation with :meth:`Context.count_aux`.

    Counting happens in Python when the calls run: once per call eagerly, once per trace under ``jax.jit`` (the
    runner keeps a traced call's counts for its later calls: see :func:`harness.measure.runner.prepare`).
    """

    f: float = 0.0
    grad: float = 0.0
    aux: float = 0.0
    differentiating: int = 0  # > 0 while a surrogate is being differentiated
    paused: int = 0  # > 0 inside a counted call's own internal evaluations

    def snapshot(self) -> tuple[float, float, float]:
        return (self.f, self.grad, self.aux)

    def since(self, before: tuple[float, float, float]) -> tuple[float, float, float]:
        """Counts added since ``before`` (a :meth:`snapshot`)."""
        return (self.f - before[0], self.grad - before[1], self.aux - before[2])

    def add(self, n: float, f: int = 0, grad: int = 0, aux: int = 0) -> None:
        if self.paused:
            return
        self.f += f * n
        self.grad += grad * n
        self.aux += aux * n

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        self.paused += 1
        try:
            yield
        finally:
            self.paused -= 1


@dataclass
class Context:
    """What an estimator receives.

    Attributes:
        B: the backend adapter (``B.xp`` is numpy, torch or jax.numpy; ``B.stop_gradient``, ``B.log``,
            ``B.softplus``, ``B.where``, ... read alike on every backend; ``B.autodiff`` is True on PyTorch and JAX).
        problem: the problem (distribution with parameter values, objective, dimension, exact gradient).
        params: parameter values as backend arrays in their parameter shapes (no replicate axis), e.g.
            ``params["loc"]`` of shape ``[D]``.
        op: objective parameters (vectors as backend arrays).
        noise: the source of base randomness (``noise.normal(shape)``, ``uniform``, ``standard_gamma``, ``gumbel``);
            the same draws on every backend when the runner asks for identical noise.
        L: samples per estimate.  R: independent replicate estimates to return (vectorize over it).
        hyper: hyperparameter values, defaults filled in.
        dtype: ``"float64"`` or ``"float32"``.  device: the backend's device name (``cpu``, ``cuda:0``, ``gpu``).
        counts: the evaluations counted so far (:class:`EvalCounts`, shared by :meth:`with_` copies).
        fitted: the estimator's declared per-target constants (``register_estimator(..., constants=...)``), fitted
            on the host before the call and given as backend arrays (JAX: arguments of the compiled call, so a fit
            per target needs no recompilation); empty when the caller did not fit them (the estimator fits itself).
            For an oracle (``oracle=True``) the runner adds the target's exact E[f] under :data:`EXACT_VALUE`.
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
    counts: EvalCounts = field(default_factory=EvalCounts)

    @cached_property
    def _event_ndim(self) -> int:
        """len(event_shape), read once per Context: counting runs on every call of f."""
        return len(self.problem.event_shape)

    fitted: dict[str, Array] = field(default_factory=dict)

    @property
    def dist(self) -> Any:
        """The distribution object: ``name``, ``params``, ``align(P)``, ``sample``, ``log_prob``, ``logpdf_elem``,
        ``score_np`` (NumPy), ``support_values`` (discrete), ``rsample`` (where a reparameterized path exists)."""
        return self.problem.dist

    @property
    def dim(self) -> int:
        """D, the number of independent sites."""
        return self.problem.dim

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one sample (``[D]``, or ``[D, K]`` for one-hot categoricals)."""
        return self.problem.event_shape

    @property
    def param_names(self) -> list[str]:
        """The differentiated parameters, the keys an implementation returns (fixed ones such as truncation bounds
        are left out)."""
        return self.problem.param_names

    @property
    def options(self) -> dict[str, Any]:
        """Distribution options of the problem, e.g. ``{"categories": K}``."""
        return self.problem.options

    @property
    def separable(self) -> bool:
        """Whether f is a sum over sites, f(z) = Σ_d g(z_d) (then :meth:`f_site` and :meth:`f_hess_diag` apply)."""
        return bool(self.problem.objective.separable)

    # -- the objective: every evaluation of f and of its derivatives goes through these methods --------------------
    def _points(self, z: Array) -> float:
        """One estimate's share of the points in ``z`` (see :class:`EvalCounts`)."""
        shape = z.shape  # static ints on every backend, tracers included
        k = len(shape) - self._event_ndim
        if k <= 0:
            return 1.0
        n = 1
        for s in shape[:k]:
            n *= s
        return float(n) if shape[0] == 1 else n / self.R

    def _count_f(self, z: Array) -> None:
        c = self.counts
        if not c.paused:
            n = self._points(z)
            c.f += n
            if c.differentiating:
                c.grad += n

    def f(self, z: Array) -> Array:
        """Total cost f(z) over the event axes: [R, L, *event] -> [R, L]."""
        self._count_f(z)
        return self.problem.objective(self.B, z, self.op)

    def f_site(self, z: Array) -> Array:
        """Per-site cost g(z_site) of a separable objective: [R, L, *event] -> [R, L, D]."""
        self._count_f(z)
        return self.problem.objective.per_site(self.B, z, self.op)

    def f_grad(self, z: Array) -> Array:
        """∂f/∂z at every sample, [R, L, *event] -> [R, L, *event], no gradient attached.

        NumPy: the objective's analytic derivative (``NotImplementedError`` when it has none); PyTorch and JAX:
        autodiff of :meth:`f`.  Counted 1 f + 1 grad per point."""
        self.counts.add(self._points(z), f=1, grad=1)
        with self.counts.pause():
            if self.B.autodiff:
                return self.B.derivatives(self.f, z, 1)[0]
            grad = self.problem.objective.grad_np
            if grad is None:
                raise NotImplementedError(f"objective {self.problem.objective.name!r} has no analytic derivative")
            return grad(z, self.op)

    def f_and_grad(self, z: Array) -> tuple[Array, Array]:
        """(f(z) [R, L], ∂f/∂z [R, L, *event]) at the same points, no gradient attached: 1 f + 1 grad per point."""
        self.counts.add(self._points(z), f=1, grad=1)
        with self.counts.pause():
            return self.B.stop_gradient(self.f(self.B.stop_gradient(z))), self.f_grad(z)

    def f_hess_diag(self, z: Array) -> Array:
        """∂²f/∂z² entry by entry (the diagonal of the Hessian, all of it for a separable f), shaped like z.

        Only for separable objectives (``ValueError`` otherwise).  NumPy: the objective's analytic second derivative;
        PyTorch and JAX: nested autodiff of :meth:`f`.  Counted 1 f + 2 grad per point."""
        obj = self.problem.objective
        if not obj.separable:
            raise ValueError(f"objective {obj.name!r} is not separable: its Hessian is not diagonal")
        self.counts.add(self._points(z), f=1, grad=2)
        with self.counts.pause():
            if self.B.autodiff:
                return self.B.derivatives(self.f, z, 2)[1]
            if obj.hess_np is None:
                raise NotImplementedError(f"objective {obj.name!r} has no analytic second derivative")
            return obj.hess_np(z, self.op)

    def grad(
        self, surrogate: Callable[[dict[str, Array]], Array], P: dict[str, Array] | None = None
    ) -> dict[str, Array]:
        """Per-replicate gradients of ``surrogate(P) -> [R]`` w.r.t. batched parameters ``P`` (default
        :meth:`batched`), on PyTorch and JAX.  Differentiate through the Context rather than ``B.grad_batched`` so
        that every derivative taken through :meth:`f` passes here (each point of f inside counts 1 f + 1 grad)."""
        with self.differentiating():
            return self.B.grad_batched(surrogate, self.batched() if P is None else P)

    @contextlib.contextmanager
    def differentiating(self) -> Iterator[None]:
        """Mark f evaluated inside as differentiated (1 f + 1 grad per point): for an implementation that takes a
        derivative through :meth:`f` with its library's own autodiff (``jax.vjp``, ``torch.autograd.grad``) instead
        of :meth:`grad`."""
        self.counts.differentiating += 1
        try:
            yield
        finally:
            self.counts.differentiating -= 1

    def count_aux(self, z: Array) -> None:
        """Count evaluations of a learned or fitted surrogate (a network, RELAX's r_ρ) at the points ``z``
        ([R, L, *event], the same point rule as f): the harness cannot see inside an implementation's own model."""
        self.counts.add(self._points(z), aux=1)

    # -- the distribution -------------------------------------------------------------------------------------
    def batched(self) -> dict[str, Array]:
        """Parameters with a replicate axis [R, *shape]; differentiate w.r.t. these per replicate."""
        return self.B.expand_params(self.params, self.R)

    def sample(self, P: dict[str, Array] | None = None, L: int | None = None) -> Array:
        """L draws per replicate [R, L, *event], no gradient attached."""
        return self.dist.sample(self.B, self.noise, self.batched() if P is None else P, self.L if L is None else L)

    def log_prob(self, z: Array, P: dict[str, Array]) -> Array:
        """Joint log density [R, L] of samples z [R, L, *event] under batched parameters P [R, ...]."""
        return self.dist.log_prob(self.B, z, P)

    def exact_value(self) -> Any:
        """E[f(z)] from the problem's ground truth (only for oracle baselines, declared ``oracle=True``).

        The runner gives it to a measured call as an argument (``fitted[EXACT_VALUE]``, a backend scalar), so a
        compiled oracle is shared by every target of one shape (a batch's examples, a workload's checkpoints) like
        any other estimator; outside the runner it is read from the problem."""
        if EXACT_VALUE in self.fitted:
            return self.fitted[EXACT_VALUE]
        return self.problem.exact.value

    def with_(self, **kw: Any) -> Context:
        """A copy with fields replaced (e.g. ``ctx.with_(L=M)``)."""
        return replace(self, **kw)

    @classmethod
    def for_problem(
        cls,
        problem: Problem,
        backend: str = "numpy",
        *,
        L: int = 1,
        R: int = 1,
        noise: Noise | None = None,
        hyper: dict[str, Any] | None = None,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> Context:
        """A Context on ``problem`` outside a measured call, for work done once per problem (e.g. fitting a control
        variate on a batch of its own): its evaluations are the fit's, not the measured estimate's."""
        from harness.backends import get_backend

        return make_context(
            problem, get_backend(backend), L=L, R=R, noise=noise, hyper=hyper, dtype=dtype, device=device
        )


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
    # inputs the estimator cannot change in place (read-only NumPy views; torch: watched per call; Backend.read_only)
    params = {k: B.read_only(B.asarray(v, dtype, device)) for k, v in problem.params_np.items()}
    op = {
        k: (B.read_only(B.asarray(v, dtype, device)) if isinstance(v, np.ndarray) else v) for k, v in problem.op.items()
    }
    return Context(B, problem, params, op, noise, L, R, dict(hyper or {}), dtype, device)  # type: ignore[arg-type]
