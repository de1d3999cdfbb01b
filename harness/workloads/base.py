r"""Workloads: a model with one stochastic node, data → η = encoder(x) → z ~ q(z|η) → f(z; x, θ).

A :class:`Workload` describes a model (data, encoder, log joint); a :class:`WorkloadSpec` (frozen,
JSON-serializable) names one measurement point — workload, configuration, training checkpoint and the
evaluation batch — and ``.build()`` gives a :class:`WorkloadProblem` that quacks like
:class:`harness.problems.Problem`, so every registered estimator runs on it unchanged.

The objective is the negative ELBO integrand with η *held fixed* inside log q:

.. math::
    f(z; \eta_0) = -\log p(x, z) + \log q(z; \eta_0), \qquad
    \nabla_\eta\,\mathbb{E}_{q_\eta}[f(z;\eta)]\big|_{\eta_0}
      = \nabla_\eta\,\mathbb{E}_{q_\eta}[f(z;\eta_0)]\big|_{\eta_0} + \mathbb{E}_{q_{\eta_0}}[\nabla_\eta\log q(z;\eta)]

and the last term is :math:`\mathbb{E}_q[\nabla_\eta\log q] = \nabla_\eta\int q = 0`.  So the η-gradient of the
negative ELBO equals the gradient of the expectation of a fixed function f — exactly the estimators' problem
("no new signature").  For pathwise estimators this drops the zero-mean score term (the "sticking the
landing" form); for score-function ones nothing changes in expectation.

The batch objective is a sum over the N examples of the batch, f(z) = Σ_b f_b(z_b).  Shapes: the N examples'
latents are flattened into the distribution's sites (Bernoulli logits [N·D], categorical [N·G, K], normal
[N·D]); ``WorkloadProblem.examples()`` gives the one-example problems used for per-example measurement
(see :mod:`harness.workloads.measure`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
from scipy import special

from harness.files.cache import digest
from harness.problems import jsonable
from harness.problems.base import ProblemShape

Array = Any
TRUTHS = ("auto", "enumeration", "reference", "quadrature")
SPLITS = ("train", "val", "test")


class WorkloadError(ValueError):
    """Invalid workload specification; ``key`` names the offending field (as ProblemError does)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class Workload:
    """Base class of a model workload.  Subclasses set the class attributes and the model methods.

    Model methods get a backend adapter ``B`` (``harness.backends``) and are written once with ``B.xp`` ops;
    ``params`` is the model state (encoder and decoder weights), ``x`` a dict of data arrays whose leading
    axis is the example axis N.
    """

    name: str = ""
    latent: str = "bernoulli"  # distribution of z: bernoulli | categorical | normal
    defaults: Mapping[str, Any] = {}  # every configuration key with its default
    default_split: str = "val"
    default_batch: int = 4  # examples in an evaluation batch when a WorkloadSpec names none  # split a WorkloadSpec evaluates on when it names none
    train_estimator: str = ""  # registered estimator that trains the checkpoints (harness.training.checkpoints)
    backends: tuple[str, ...] = ("numpy", "torch", "jax")  # where encode/log_joint run (a torch model: torch)
    eval_keys: tuple[str, ...] = ("reference_samples",)  # config keys that do not change the trained model
    differentiable: bool = True  # f is differentiable in z (relaxed / pathwise estimators apply)
    doc: str = ""

    # -- configuration and data -------------------------------------------------------------
    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults merged with ``given``; unknown keys and bad values raise WorkloadError."""
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            raise WorkloadError(f"config.{unknown[0]}", f"unknown key for {self.name}; valid: {sorted(self.defaults)}")
        cfg = {**self.defaults, **given}
        for k, v in cfg.items():
            d = self.defaults[k]
            if isinstance(d, bool) != isinstance(v, bool) or (
                isinstance(d, int | float) and not isinstance(v, int | float)
            ):
                raise WorkloadError(f"config.{k}", f"must be of type {type(d).__name__}, got {v!r}")
            if isinstance(d, str) and not isinstance(v, str):
                raise WorkloadError(f"config.{k}", f"must be a string, got {v!r}")
        self.check(cfg)
        return cfg

    def check(self, cfg: Mapping[str, Any]) -> None:
        """Value checks beyond types (raise WorkloadError)."""

    def latent_shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        """Per-example latent event shape: (D,) or (G, K)."""
        raise NotImplementedError

    def dataset(self, cfg: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        """{split: {name: array [n, ...]}} for the splits train, val, test."""
        raise NotImplementedError

    def prepare_batch(self, x: dict[str, np.ndarray], rng: np.random.Generator, cfg: Mapping[str, Any]) -> dict:
        """A batch as the model sees it (e.g. dynamic binarization draws pixels with ``rng``); default: as is."""
        return x

    def init_params(self, cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def encoder_keys(self, cfg: Mapping[str, Any]) -> list[str]:
        """Names of the parameters η depends on (the encoder weights)."""
        raise NotImplementedError

    def param_shapes(self, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """Shapes of the model weights (what size limits read before anything is allocated).  The default
        initializes the model once; override it with arithmetic for models that can be large."""
        return {k: tuple(np.shape(v)) for k, v in self.init_params(cfg, np.random.default_rng(0)).items()}

    # -- the model, on any backend ------------------------------------------------------------
    def encode(self, B: Any, params: Mapping[str, Array], x: Mapping[str, Array], cfg: Mapping[str, Any]) -> dict:
        """η for a batch: {param: [N, *latent]} in the latent distribution's parameters."""
        raise NotImplementedError

    def log_joint(
        self, B: Any, z: Array, params: Mapping[str, Array], x: Mapping[str, Array], cfg: Mapping[str, Any]
    ) -> Array:
        """log p(x_b, z_b) for z [..., N, *latent] -> [..., N]."""
        raise NotImplementedError

    # -- optional analytic NumPy paths ----------------------------------------------------------
    def log_joint_grad_np(
        self, z: np.ndarray, params: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray], cfg: Mapping[str, Any]
    ) -> np.ndarray | None:
        """∂/∂z log p(x, z) (same shape as z), or None (then numpy differentiable estimators do not apply)."""
        return None

    def encoder_vjp_np(
        self,
        params: Mapping[str, np.ndarray],
        x: Mapping[str, np.ndarray],
        G: Mapping[str, np.ndarray],
        cfg: Mapping[str, Any],
    ) -> dict[str, np.ndarray] | None:
        """Jᵀ G_r for every replicate: G {param: [R, N, *latent]} -> {weight: [R, *w]}, or None."""
        return None

    @property
    def numpy_grad(self) -> bool:
        return type(self).log_joint_grad_np is not Workload.log_joint_grad_np

    @property
    def numpy_vjp(self) -> bool:
        return type(self).encoder_vjp_np is not Workload.encoder_vjp_np


@dataclass(frozen=True)
class WorkloadSpec:
    """One measurement point: workload × config × checkpoint × evaluation batch (what a Cell carries)."""

    workload: str
    config: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: int = 0
    split: str = ""  # "" -> the workload's default_split
    batch_size: int = 0  # 0 -> the workload's default_batch
    batch_seed: int = 0
    truth: str = "auto"  # auto | enumeration | reference | quadrature
    per_example: bool = True  # estimate each example's gradient with its own f_b (see measure.py)
    example: int | None = None  # a one-example sub-problem of the batch
    weights: str = ""  # digest of model weights given explicitly (workload_problem_at), instead of the checkpoint's

    def to_dict(self) -> dict[str, Any]:
        d = {
            "workload": self.workload,
            "config": jsonable(dict(sorted(self.config.items()))),
            "checkpoint": self.checkpoint,
            "split": self.split,
            "batch_size": self.batch_size,
            "batch_seed": self.batch_seed,
            "truth": self.truth,
            "per_example": self.per_example,
        }
        if self.example is not None:
            d["example"] = self.example
        if self.weights:
            d["weights"] = self.weights
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkloadSpec:
        keys = (
            "workload",
            "config",
            "checkpoint",
            "split",
            "batch_size",
            "batch_seed",
            "truth",
            "per_example",
            "example",
            "weights",
        )
        return cls(**{k: d[k] for k in keys if k in d})

    def build(self, state: Mapping[str, np.ndarray] | None = None) -> WorkloadProblem:
        """The problem at the checkpoint's weights, or at ``state`` (then ``weights`` must be its digest)."""
        return WorkloadProblem(self, state)

    # the fields a suite's [[exclude]] and capability checks read from a ProblemSpec
    @property
    def distribution(self) -> str:
        from harness.workloads import get_workload

        return get_workload(self.workload).latent

    @property
    def objective(self) -> str:
        return "neg_elbo"

    @property
    def dim(self) -> int:
        from harness.workloads import get_workload

        wl = get_workload(self.workload)
        shape = wl.latent_shape(wl.resolve(self.config))
        return (1 if self.example is not None else (self.batch_size or wl.default_batch)) * shape[0]

    def label(self) -> str:
        from harness.workloads import get_workload

        wl = get_workload(self.workload)
        cfg = ",".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        ex = f"#{self.example}" if self.example is not None else ""
        split, bs = self.split or wl.default_split, self.batch_size or wl.default_batch
        at = f"weights:{self.weights[:8]}" if self.weights else self.checkpoint
        return f"{self.workload}({cfg})@{at}/{split}[{bs}]{ex}"

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


class NegElbo:
    """f(z) = Σ_b [−log p(x_b, z_b) + log q(z_b; η_b fixed)], written once with ``B.xp`` ops; not separable."""

    separable = False
    params: Mapping[str, Any] = {}
    name = "neg_elbo"

    def __init__(self, wl: Workload, cfg: Mapping[str, Any], n: int, latent: tuple[int, ...], dist: Any) -> None:
        self.wl, self.cfg, self.n, self.latent, self.dist = wl, cfg, n, latent, dist
        self.differentiable = wl.differentiable
        self.grad_np = self._grad_np if wl.numpy_grad else None
        self.hess_np = None
        self.supports = frozenset({dist.support})
        self.doc = f"negative ELBO integrand of {wl.name} (η fixed inside log q)"

    @staticmethod
    def split_op(op: Mapping[str, Any]) -> tuple[dict, dict, dict]:
        parts: tuple[dict, dict, dict] = ({}, {}, {})
        for k, v in op.items():
            kind, _, name = k.partition(":")
            parts[("w", "x", "eta").index(kind)][name] = v
        return parts

    def _per_example(self, z: Array) -> Array:
        return z.reshape(tuple(z.shape[: z.ndim - len(self.dist_event)]) + (self.n, *self.latent))

    @property
    def dist_event(self) -> tuple[int, ...]:
        return (self.n * self.latent[0], *self.latent[1:])

    def f_examples(self, B: Any, z: Array, op: Mapping[str, Any]) -> Array:
        """Per-example values [..., N] for z [..., *event]."""
        w, x, eta = self.split_op(op)
        zz = self._per_example(z)
        lq = self.dist.logpdf_elem(B, zz, eta).sum(-1)
        return lq - self.wl.log_joint(B, zz, w, x, self.cfg)

    def __call__(self, B: Any, z: Array, op: Mapping[str, Any]) -> Array:
        return self.f_examples(B, z, op).sum(-1)

    def per_site(self, B: Any, z: Array, op: Mapping[str, Any]) -> Array:
        raise ValueError(f"{self.name} is not separable: it has no per-site decomposition")

    def _grad_np(self, z: np.ndarray, op: Mapping[str, Any]) -> np.ndarray:
        w, x, eta = self.split_op(op)
        zz = self._per_example(np.asarray(z))
        glj = self.wl.log_joint_grad_np(zz, w, x, self.cfg)
        if self.dist.name == "bernoulli":
            glq = np.broadcast_to(eta["logits"], zz.shape)
        elif self.dist.name == "categorical":
            glq = np.broadcast_to(special.log_softmax(eta["logits"], axis=-1), zz.shape)
        else:
            glq = -(zz - eta["loc"]) / eta["scale"] ** 2
        return (glq - glj).reshape(np.shape(z))


def check_spec(spec: WorkloadSpec) -> tuple[Workload, dict[str, Any], str, int]:
    """Validate a spec without training anything: (workload, resolved config, split, batch size)."""
    from harness.workloads import get_workload
    from harness.workloads.truth import method_for

    wl = get_workload(spec.workload)
    if not isinstance(spec.config, Mapping):
        raise WorkloadError("config", f"must be a table, got {spec.config!r}")
    cfg = wl.resolve(spec.config)
    if spec.truth not in TRUTHS:
        raise WorkloadError("truth", f"unknown truth {spec.truth!r}; valid: {list(TRUTHS)}")
    split = spec.split or wl.default_split
    if split not in SPLITS:
        raise WorkloadError("split", f"unknown split {spec.split!r}; valid: {list(SPLITS)}")
    for k in ("checkpoint", "batch_seed"):
        v = getattr(spec, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise WorkloadError(k, f"must be a non-negative integer, got {v!r}")
    n_avail = len(next(iter(wl.dataset(cfg)[split].values())))
    bs = spec.batch_size or wl.default_batch
    if not isinstance(bs, int) or isinstance(bs, bool) or not 1 <= bs <= n_avail:
        raise WorkloadError("batch_size", f"must be an integer in [1, {n_avail}] ({split} split), got {bs!r}")
    if spec.example is not None and (not isinstance(spec.example, int) or not 0 <= spec.example < bs):
        raise WorkloadError("example", f"must be in [0, {bs}), got {spec.example!r}")
    method_for(wl, tuple(wl.latent_shape(cfg)), spec.truth)
    return wl, cfg, split, bs


def workload_problem_at(spec: WorkloadSpec, state: Mapping[str, np.ndarray]) -> WorkloadProblem:
    """The problem of ``spec``'s batch at the given model weights (e.g. a training unit's saved state) instead of a
    cached checkpoint; its identity names the weights by digest, so truths and fits are never shared with another
    state."""
    state = {k: np.asarray(v, np.float64) for k, v in state.items()}
    return WorkloadProblem(replace(spec, weights=digest(state)), state)


class WorkloadProblem(ProblemShape):
    """A workload at a checkpoint (or at given weights) on a batch, quacking like :class:`harness.problems.Problem`."""

    def __init__(self, spec: WorkloadSpec, state: Mapping[str, np.ndarray] | None = None) -> None:
        from harness.backends import get_backend
        from harness.problems import DISTRIBUTIONS

        self.spec = spec
        wl, cfg, split, bs = check_spec(spec)
        if state is None:
            if spec.weights:
                raise WorkloadError("weights", "a spec naming its weights by digest needs them: workload_problem_at")
            # the checkpoint provider lives in the training layer (checkpoints come from the training loop)
            from harness.training.checkpoints import load_state

            state = load_state(wl, cfg, spec.checkpoint)
        state = {k: np.asarray(v, np.float64) for k, v in state.items()}
        self.state_digest = digest(state)
        if spec.weights and spec.weights != self.state_digest:
            raise WorkloadError("weights", f"digest {spec.weights[:12]}... does not match the weights given")
        self.workload, self.cfg = wl, cfg
        data = wl.dataset(cfg)[split]
        idx = np.random.default_rng(spec.batch_seed).choice(len(next(iter(data.values()))), size=bs, replace=False)
        raw = {k: np.asarray(v[idx], dtype=np.float64) for k, v in data.items()}
        x = wl.prepare_batch(raw, np.random.default_rng([spec.batch_seed, 1]), cfg)  # whole batch: same draws
        if spec.example is not None:
            idx = idx[[spec.example]]
            x = {k: v[[spec.example]] for k, v in x.items()}
        self.x = x
        self.state = state
        self.n = len(idx)
        self.latent = tuple(wl.latent_shape(cfg))
        self.dist = DISTRIBUTIONS[wl.latent]
        self.eval_backend = get_backend("numpy" if "numpy" in wl.backends else wl.backends[0])
        self.eta = {k: v for k, v in self._np_call(wl.encode, self.state, self.x, cfg).items()}
        self.dim = self.n * self.latent[0]
        self.options = {"categories": self.latent[1]} if len(self.latent) > 1 else {}
        self.params_np = {k: v.reshape(self.dim, *self.latent[1:]) for k, v in self.eta.items()}
        enc = set(wl.encoder_keys(cfg))
        self.encoder_params = {k: v for k, v in self.state.items() if k in enc}
        self.op: dict[str, Any] = {f"w:{k}": v for k, v in self.state.items() if k not in enc}
        self.op.update({f"x:{k}": v for k, v in self.x.items()})
        self.op.update({f"eta:{k}": v for k, v in self.eta.items()})
        self.objective = NegElbo(wl, cfg, self.n, self.latent, self.dist)

    def _np_call(self, fn: Any, *args: Any) -> Any:
        """``fn(B, *args)`` on the workload's evaluation backend in float64, NumPy in and out."""
        B = self.eval_backend
        conv = lambda a: (
            {k: conv(v) for k, v in a.items()}
            if isinstance(a, Mapping)
            # noqa: E731
            else (B.asarray(a, "float64", "cpu") if isinstance(a, np.ndarray) else a)
        )
        out = fn(B, *[conv(a) for a in args])
        if isinstance(out, Mapping):
            return {k: np.asarray(B.to_numpy(v), dtype=np.float64) for k, v in out.items()}
        return np.asarray(B.to_numpy(out), dtype=np.float64)

    def f_np(self, z: np.ndarray) -> np.ndarray:
        """f(z) [R, L] for z [R, L, *event] as float64 NumPy (truth computations)."""
        return self._np_call(self.objective, z, self.op)

    def label(self) -> str:
        return self.spec.label()

    def examples(self) -> list[WorkloadProblem]:
        """One-example problems (each example's own f_b), in batch order."""
        if self.spec.example is not None:
            return [self]
        return [WorkloadProblem(replace(self.spec, example=i), self.state) for i in range(self.n)]

    @cached_property
    def exact(self) -> Any:
        from harness.workloads.truth import exact_for

        return exact_for(self)
