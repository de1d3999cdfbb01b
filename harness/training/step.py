r"""One training step on a workload: the encoder by a registered estimator (examples as replicates), the decoder exactly.

Layout ("examples as replicates").  An estimator returns R independent estimates [R, *param shape]; a training
step needs one gradient per example b of the minibatch, each with its own f_b (the published comparisons do
not let example b's score pick up the other examples' noise, see :mod:`harness.targets.workload`).  So the
step calls the estimator ONCE with R = N: :class:`StepContext` gives ``batched()`` = η [N, *latent] (example b's
parameters on replicate b) and ``f(z)`` [N, L, *latent] → [N, L] with row b evaluated by f_b.  The result
g [N, *latent] is ∇_η of Σ_b E[f_b]; the encoder gets Jᵀ g / N by one backward pass through η = encoder(x)
(the chain rule of :mod:`harness.workloads.chain`, here inside autograd).

Objectives.  For an estimator declaring ``requires = ("multi_sample_bound",)`` (``vimco``, ``dreg``,
``iwae_pathwise``) the training objective is the K-sample importance-weighted bound with K = ``n_samples``;
for every other one the ELBO (the estimator's L samples averaged).  The decoder gets the exact autograd
gradient of the same objective on L fresh samples z ~ q(·|η) (no gradient into η), the same for every
estimator; those samples also give the logged training objective on the batch.

The problem an estimator sees (:class:`StepProblem`) is one example (example 0 of the batch) as NumPy, for the
estimators that fit something to the problem (REBAR/RELAX fit their control variate on it; refitted every
``refit_every`` steps — the fit key names the refit step, so fits are deterministic and stored for resume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backends import Noise
from harness.registry.context import Context, EvalCounts
from harness.workloads.base import NegElbo, Workload


def fresh(B: Any, v: Any) -> Any:
    """``v`` without gradient, as an array of its own (PyTorch: a detached copy an estimator may mark for autograd;
    JAX arrays are immutable)."""
    out = B.stop_gradient(v)
    return out.clone() if B.name == "torch" else out


def per_example_f(wl: Workload, cfg: dict, dist: Any, B: Any, params: dict, x: dict, eta_fixed: dict) -> Any:
    """f_b(z) for z [..., N, *latent] → [..., N] (η fixed inside log q; ``params`` may carry gradients)."""

    def f(z: Any) -> Any:
        return dist.logpdf_elem(B, z, eta_fixed).sum(-1) - wl.log_joint(B, z, params, x, cfg)

    return f


@dataclass
class StepContext(Context):
    """A :class:`harness.registry.context.Context` with the N examples on the replicate axis (see the module docstring)."""

    eta: dict[str, Any] = field(default_factory=dict)  # [N, *latent], detached
    fb: Any = None  # f_b on [..., N, *latent] -> [..., N]
    n_latent: int = 1  # len(latent shape)

    def batched(self) -> dict[str, Any]:
        return {k: fresh(self.B, v) for k, v in self.eta.items()}

    def f(self, z: Any) -> Any:
        """[N, *mid, *latent] -> [N, *mid] (estimators may add axes between replicates and the event); counted as
        :meth:`Context.f` counts (per example's estimate: the points of its row)."""
        self._count_f(z)
        mv = self.B.xp.moveaxis
        return mv(self.fb(mv(z, 0, z.ndim - self.n_latent - 1)), -1, 0)


class PerExampleBackend:
    """The backend adapter, except that ``expand_params`` of the per-example ``ctx.params`` [N, 1, ...] to n
    replicates gives each example n / N consecutive copies (example-major, as ``z.reshape(N·L, ...)`` orders them)."""

    def __init__(self, B: Any, n: int) -> None:
        self._B, self._n = B, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._B, name)

    def expand_params(self, params: dict[str, Any], R: int) -> dict[str, Any]:
        if R % self._n:
            raise ValueError(f"training step: {R} replicates do not split over the {self._n} examples of the batch")
        out = {}
        for k, v in params.items():
            v = self._B.stop_gradient(v)[:, 0]
            out[k] = (
                v.repeat_interleave(R // self._n, 0)
                if self._B.name == "torch"
                else self._B.xp.repeat(v, R // self._n, axis=0)
            )
        return out


class _Spec:
    def __init__(self, ident: dict) -> None:
        self.ident = ident

    def to_dict(self) -> dict:
        return dict(self.ident)


class StepProblem:
    """Example 0 of the batch as a NumPy problem (what fitting estimators read); quacks like a Problem."""

    def __init__(self, wl: Workload, cfg: dict, dist: Any, state: dict, x0: dict, eta0: dict, ident: dict) -> None:
        self.workload, self.cfg, self.dist = wl, cfg, dist
        self.latent = tuple(wl.latent_shape(cfg))
        self.n, self.dim = 1, self.latent[0]
        self.options = {"categories": self.latent[1]} if len(self.latent) > 1 else {}
        self.params_np = {k: v.reshape(self.dim, *self.latent[1:]) for k, v in eta0.items()}
        enc = set(wl.encoder_keys(cfg))
        self.op: dict[str, Any] = {f"w:{k}": v for k, v in state.items() if k not in enc}
        self.op.update({f"x:{k}": v for k, v in x0.items()})
        self.op.update({f"eta:{k}": v for k, v in eta0.items()})
        self.objective = NegElbo(wl, cfg, 1, self.latent, dist)
        self.spec = _Spec(ident)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.dist.event_shape(self.dim, self.options)

    @property
    def param_names(self) -> list[str]:
        return [k for k, ps in self.dist.params.items() if ps.differentiable]

    def label(self) -> str:
        return f"training[{self.spec.ident}]"

    @property
    def exact(self) -> Any:
        raise ValueError("a training step has no exact gradient (estimators that need one do not train)")


def iw_bound(B: Any, fz: Any, axis: int = 0) -> Any:
    """log (1/K) Σ_k exp(−f(z_k)) along ``axis`` (K = its length)."""
    return B.logsumexp(-fz, axis) - math.log(fz.shape[axis])


def encoder_gradient(
    spec: Any,
    B: Any,
    wl: Workload,
    cfg: dict,
    dist: Any,
    dec: dict,
    x: dict,
    eta: dict,
    noise: Noise,
    L: int,
    hyper: dict,
    dtype: str,
    device: str,
    problem: Any,
    fitted: dict[str, Any] | None = None,
    counts: EvalCounts | None = None,
) -> dict[str, Any]:
    """g [N, *latent] = the estimator's per-example gradient (of E[f_b], or of the negative K-sample bound).

    ``noise``: the step's noise (eagerly: drawn from the step's generator; traced: the same draws as arguments);
    ``fitted``: the estimator's declared constants as arrays (empty: it fits itself); ``counts`` receives the
    evaluations the Context counts."""
    fixed = {k: B.stop_gradient(v) for k, v in eta.items()}
    fb = per_example_f(wl, cfg, dist, B, dec, x, fixed)
    N = next(iter(fixed.values())).shape[0]
    ctx = StepContext(
        PerExampleBackend(B, N),
        problem,
        {k: v[:, None] for k, v in fixed.items()},
        {},
        noise,
        L,
        N,
        hyper,
        dtype,
        device,
        counts=counts if counts is not None else EvalCounts(),
        fitted=dict(fitted or {}),
        eta=fixed,
        fb=fb,
        n_latent=len(wl.latent_shape(cfg)),
    )  # type: ignore[arg-type]
    return spec.fn(ctx)


def decoder_objective(
    B: Any,
    wl: Workload,
    cfg: dict,
    dist: Any,
    params: dict,
    x: dict,
    eta: dict,
    noise: Noise,
    L: int,
    multi: bool,
) -> Any:
    """Per-example training objective [N] (ELBO, or the L-sample bound when ``multi``), differentiable in the
    decoder weights only (z ~ q(·|η) drawn without gradient, from ``noise``)."""
    fixed = {k: B.stop_gradient(v) for k, v in eta.items()}
    z = dist.sample(B, noise, fixed, L)  # [N, L, *latent]
    fz = per_example_f(wl, cfg, dist, B, params, x, fixed)(B.xp.swapaxes(z, 0, 1))  # [L, N]
    return iw_bound(B, fz, 0) if multi else -fz.mean(0)


def held_out_bound(
    B: Any,
    wl: Workload,
    cfg: dict,
    dist: Any,
    params: dict,
    x: dict,
    K: int,
    seed: int,
    chunk: int,
    dtype: str,
    device: str,
) -> np.ndarray:
    """Per-example K-sample bound [N] (K = 1: the ELBO) on a held-out batch, fixed noise ``seed`` (the caller turns
    gradient tracking off: an engine's business)."""
    rng = np.random.default_rng(seed)
    out = []
    n = next(iter(x.values())).shape[0]
    for s in range(0, n, chunk):
        xs = {k: v[s : s + chunk] for k, v in x.items()}
        eta = wl.encode(B, params, xs, cfg)
        z = dist.sample(B, B.numpy_noise(rng, dtype, device), eta, K)
        fz = per_example_f(wl, cfg, dist, B, params, xs, eta)(B.xp.swapaxes(z, 0, 1))
        out.append(B.to_numpy(iw_bound(B, fz, 0)).astype(np.float64))
    return np.concatenate(out)
