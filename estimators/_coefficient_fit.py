r"""Fitted coefficients of linear control variates: the one interface to per-problem fitted state.

An estimator whose control variates enter linearly, :math:`\hat g = g_0 - \sum_j c_j C_j` with every
:math:`C_j` of mean zero, is unbiased for any constants c.  The papers learn such coefficients online (by gradient
steps on the estimator's variance); here they are fitted once per (estimator, problem, L, hyperparameters) to
minimize the trace of the covariance of :math:`\hat g` — a least-squares problem — on an independent batch of N
L-sample estimates:

.. math::
    \hat c = \arg\min_c \sum_{n=1}^N \big\| (g_{0,n} - \bar g_0) - \textstyle\sum_j c_j (C_{j,n} - \bar C_j) \big\|^2 .

The batch is drawn from ``numpy.random.default_rng(seed)``, seed = SHA-256 of (estimator, problem identity, L,
hyperparameters), in float64, converted to the estimator's backend: deterministic, independent of the measurement
noise (the estimator stays unbiased) and identical on every backend (which therefore agree on identical noise).
The fit runs outside any traced function (JAX: ``jax.ensure_compile_time_eval``), so per-call timing is the
estimator's; its cost (N·L evaluations of f, and of ∂f/∂z where the terms need it) is recorded by
:func:`fit_log`, not in the per-estimate cost.

The fitting batch is evaluated through a :class:`stochgrad.Context` of its own (:func:`fitting_context`), built
from the problem's parameter values.

Fitted state.  The fits live in one :class:`stochgrad.FitCache` per estimator (:data:`FITS`), keyed by the target's
identity (``ctx.problem.spec.to_dict()``) and the fit's hyperparameters (L and ``ctx.hyper`` less the fixed
constants); an estimator that uses :func:`coefficients` registers ``state=declaration(name)``, so a training run
(``stochgrad train``) refits every ``refit_every`` steps, saves the fits with its checkpoints and restores them on
resume (bit-identical curves after a kill), like REBAR/RELAX.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import stochgrad as sg

Terms = Callable[[Any, dict[str, Any]], tuple[dict[str, Any], list[dict[str, Any]]]]

FIT_HYPER = {
    "coefficients": sg.Hyper(
        "fitted", choices=("fitted", "fixed"), doc="fitted: variance-minimizing constants; fixed: the declared values"
    ),
    "fit_samples": sg.Hyper(
        0, low=0, high=1_000_000, doc="L-sample estimates in the fitting batch; 0 = automatic (256 to 2048)"
    ),
    "fit_seed": sg.Hyper(0, low=0, high=2**31, doc="extra seed of the fitting batch"),
}
AUTO_MIN, AUTO_MAX, AUTO_ELEMENTS = 256, 2048, 2**20


@dataclass(frozen=True)
class CoefficientFit:
    """The fitted constants and how they were obtained."""

    coefficients: tuple[float, ...]
    variance: float  # trace of the covariance of ĝ on the fitting batch at the fitted constants
    base_variance: float  # the same with all constants 0
    samples: int  # N, L-sample estimates in the batch
    seed: int
    seconds: float


def _fit_json(fit: CoefficientFit) -> dict[str, Any]:
    return asdict(fit)


def _fit_from_json(d: dict[str, Any]) -> CoefficientFit:
    return CoefficientFit(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


FITS: dict[str, sg.FitCache] = {}


def fit_cache(name: str) -> sg.FitCache:
    """The estimator ``name``'s fits (created on first use)."""
    if name not in FITS:
        FITS[name] = sg.FitCache(
            name,
            _fit_json,
            _fit_from_json,
            "the control variates' coefficients fitted per target, L and hyperparameters",
        )
    return FITS[name]


def declaration(name: str) -> sg.FittedState:
    """The fitted state to register with the estimator ``name`` (``register_estimator(..., state=...)``)."""
    return fit_cache(name).declaration()


_LOG: list[dict[str, Any]] = []


def fit_batch_size(ctx: Any) -> int:
    """``fit_samples``, or with 0: clip(2^20 / (L · sample size), 256, 2048)."""
    given = int(ctx.hyper.get("fit_samples", 0))
    if given:
        return given
    elements = ctx.L * int(np.prod(ctx.problem.event_shape))
    return int(min(AUTO_MAX, max(AUTO_MIN, AUTO_ELEMENTS // max(elements, 1))))


def fit_hyper(ctx: Any, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a fit depends on besides its target: L and the hyperparameters less ``ignore`` (the fixed constants)."""
    return {"L": ctx.L, "hyper": {k: v for k, v in ctx.hyper.items() if k not in ignore}}


def fit_key(ctx: Any, name: str, ignore: tuple[str, ...] = ()) -> str:
    """Identity of a fit: estimator, problem, L and the hyperparameters (less ``ignore``, the fixed constants)."""
    spec = ctx.problem.spec.to_dict()
    return json.dumps({"estimator": name, "problem": spec, **fit_hyper(ctx, ignore)}, sort_keys=True, default=str)


def fitting_context(ctx: Any, N: int, seed: int) -> Any:
    """A float64 context on ``ctx``'s backend and device with the problem's own parameter values and N replicates,
    noise drawn from ``numpy.random.default_rng(seed)``."""
    B, dev = ctx.B, ctx.device
    params = {k: B.asarray(v, "float64", dev) for k, v in ctx.problem.params_np.items()}
    op = {k: (B.asarray(v, "float64", dev) if isinstance(v, np.ndarray) else v) for k, v in ctx.problem.op.items()}
    noise = B.numpy_noise(np.random.default_rng(seed), "float64", dev)
    return sg.Context(
        B=B,
        problem=ctx.problem,
        params=params,
        op=op,
        noise=noise,
        L=ctx.L,
        R=N,
        hyper=dict(ctx.hyper),
        dtype="float64",
        device=dev,
    )


def replicated(ctx: Any) -> dict[str, Any]:
    """The context's parameters broadcast to [R, *shape] (without the backend's ``expand_params``)."""
    return {k: ctx.B.xp.broadcast_to(v, (ctx.R, *tuple(v.shape))) for k, v in ctx.params.items()}


def _least_squares(g0: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(c, trace variance at c, trace variance at 0) for g0 [N, P] and C [J, N, P]."""
    N = g0.shape[0]
    A = (g0 - g0.mean(0)).reshape(-1)
    M = (C - C.mean(1, keepdims=True)).reshape(C.shape[0], -1).T
    c = np.linalg.lstsq(M, A, rcond=None)[0]
    r = A - M @ c
    return c, float(r @ r / (N - 1)), float(A @ A / (N - 1))


def fit_coefficients(ctx: Any, name: str, terms: Terms, ignore: tuple[str, ...] = ()) -> CoefficientFit:
    """The fitted constants for ``name`` on ``ctx``'s problem (cached; see the module docstring).

    ``terms(fit_ctx, P)`` returns ``(g0, [C_1, ..., C_J])`` as {param: array [N, *param_shape]} for parameters P
    [N, *shape]; the estimator is ĝ = g0 − Σ_j c_j C_j.  ``ignore``: hyperparameters that do not affect the fit.
    """
    cache, target, fh = fit_cache(name), ctx.problem.spec.to_dict(), fit_hyper(ctx, ignore)
    got = cache.get(target, fh)
    if got is not None:
        return got
    key = fit_key(ctx, name, ignore)
    t0 = time.perf_counter()
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1
    N = fit_batch_size(ctx)

    def run() -> tuple[np.ndarray, np.ndarray]:
        fctx = fitting_context(ctx, N, seed)
        g0, C = terms(fctx, replicated(fctx))
        flat = lambda d: np.concatenate([np.asarray(fctx.B.to_numpy(d[k])).reshape(N, -1) for k in sorted(d)], 1)  # noqa: E731
        return flat(g0), np.stack([flat(c) for c in C])

    if ctx.B.name == "jax":
        import jax

        with jax.ensure_compile_time_eval():
            g0, C = run()
    else:
        g0, C = run()
    c, var, base = _least_squares(g0, C)
    out = CoefficientFit(tuple(float(v) for v in c), var, base, N, seed, time.perf_counter() - t0)
    cache.put(target, fh, out)
    _LOG.append({"estimator": name, "problem": ctx.problem.label(), **fh, **asdict(out)})
    return out


def coefficients(ctx: Any, name: str, terms: Terms, fixed: dict[str, float]) -> tuple[float, ...]:
    """The constants to use: the values of the hyperparameters named in ``fixed`` (name -> value) with
    ``coefficients = "fixed"``, else the fitted ones (those hyperparameters then do not enter the fit's key)."""
    if ctx.hyper.get("coefficients", "fitted") == "fixed":
        return tuple(fixed.values())
    return fit_coefficients(ctx, name, terms, tuple(fixed)).coefficients


def fit_log() -> list[dict[str, Any]]:
    """One record per fit done in this process: estimator, problem, L, hyper, constants, variances, N, seed, seconds."""
    return list(_LOG)
