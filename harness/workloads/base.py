r"""Workloads: a model with one stochastic node, data → η = encoder(x) → z ~ q(z|η) → f(z; x, θ).

A :class:`Workload` describes a model (data, encoder, log joint) and declares its :class:`Traits`; a workload
*target* — the model at a training checkpoint on an evaluation batch — is built by
:mod:`harness.targets.workload`, so every registered estimator runs on it unchanged.

The objective is the negative ELBO integrand with η *held fixed* inside log q (:class:`NegElbo`):

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
[N·D]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from scipy import special

from harness.backends import AUTODIFF_BACKENDS
from harness.problems.target import Traits

Array = Any
SPLITS = ("train", "val", "test")


class WorkloadError(ValueError):
    """Invalid workload specification; ``key`` names the offending field (as ProblemError does)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class Workload:
    """Base class of a model workload.  Subclasses set the class attributes and the model methods.

    Model methods are written once against the array API standard — ``xp = array_namespace(z)`` from
    array-api-compat, then ``xp.sum``, ``xp.reshape``, ``xp.matrix_transpose`` — so the same code runs on NumPy,
    PyTorch and JAX (the raw namespaces differ: ``torch.transpose`` is not ``numpy.transpose``); they also get the
    backend adapter ``B`` (``harness.backends``) for its numerically stable ``B.softplus`` and friends.
    ``params`` is the model state (encoder and decoder weights), ``x`` a dict of data arrays whose leading axis
    is the example axis N.
    """

    name: str = ""
    latent: str = "bernoulli"  # distribution of z: bernoulli | categorical | normal
    defaults: Mapping[str, Any] = {}  # every configuration key with its default
    default_split: str = "val"  # the split a workload target evaluates on when it names none
    default_batch: int = 4  # examples in an evaluation batch when a workload target names none
    train_estimator: str = ""  # declared reference estimator used for training (see checkpoints.py)
    backends: tuple[str, ...] = ("numpy", "torch", "jax")  # where encode/log_joint run (a torch model: torch)
    eval_keys: tuple[str, ...] = ("reference_samples",)  # config keys that do not change the trained model
    differentiable: bool = True  # f is differentiable in z (relaxed / pathwise estimators apply)
    doc: str = ""
    # what the model is beyond its name and configuration (a digest of a user's data, weights and code; "" for
    # a class, whose code is its name): it enters the keys of cached checkpoints and truths
    fingerprint: str = ""

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

    def traits(self) -> Traits:
        """What the model offers an estimator: its latent, a differentiable (not separable) negative ELBO, the
        backends it runs on (numpy needs the encoder chain rule ``encoder_vjp_np``) and where ∂f/∂z exists."""
        notes = {}
        if "numpy" in self.backends and not self.numpy_vjp:
            notes["numpy"] = f"numpy has no encoder chain rule for {self.name}"
        backends = tuple(b for b in self.backends if b not in notes)
        return Traits(
            name=self.name,
            latent=self.latent,
            differentiable=self.differentiable,
            separable=False,
            multi_sample_bound=False,
            exact_value=True,
            backends=backends,
            grad_backends=tuple(b for b in backends if b in AUTODIFF_BACKENDS or self.numpy_grad),
            backend_notes=notes,
        )


class NegElbo:
    """f(z) = Σ_b [−log p(x_b, z_b) + log q(z_b; η_b fixed)], written once against the array API; not separable."""

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
        shape = tuple(z.shape[: z.ndim - len(self.dist_event)]) + (self.n, *self.latent)
        return array_namespace(z).reshape(z, shape)

    @property
    def dist_event(self) -> tuple[int, ...]:
        return (self.n * self.latent[0], *self.latent[1:])

    def f_examples(self, B: Any, z: Array, op: Mapping[str, Any]) -> Array:
        """Per-example values [..., N] for z [..., *event]."""
        w, x, eta = self.split_op(op)
        zz = self._per_example(z)
        lq = array_namespace(zz).sum(self.dist.logpdf_elem(B, zz, eta), axis=-1)
        return lq - self.wl.log_joint(B, zz, w, x, self.cfg)

    def __call__(self, B: Any, z: Array, op: Mapping[str, Any]) -> Array:
        f = self.f_examples(B, z, op)
        return array_namespace(f).sum(f, axis=-1)

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
