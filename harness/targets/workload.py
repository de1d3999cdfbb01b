"""A workload target: a model at a training checkpoint on an evaluation batch, measured like any problem.

:class:`WorkloadSpec` (frozen, JSON-serializable: what a Cell carries) names the workload, its configuration,
the checkpoint (training steps) and the evaluation batch; ``build()`` gives a :class:`WorkloadProblem`: the
distribution's parameters are η = encoder(x) at the checkpoint's weights and the objective is the negative ELBO
integrand (:class:`harness.workloads.base.NegElbo`), so every registered estimator runs on it unchanged.

The weights come from one call site, :meth:`WorkloadProblem.weights`, which asks the training layer's checkpoint
provider (:func:`harness.training.checkpoints.load_state`: trained on first use by the one trainer, cached on
disk); a caller that holds weights already (offline measurement at a training unit's state) uses
:func:`workload_problem_at`, whose spec names the weights by digest, so truths and fits are never shared with
another state.

How an estimate is assembled (the target's business, behind :class:`harness.problems.target.Built`):

* Fairness: the batch objective is a sum over examples, f = Σ_b f_b.  An estimator that weights scores by the
  *total* f (score function, ARM/DisARM, RLOO, ...) would pick up the other examples' noise, which the published
  comparisons (DisARM, RODEO) avoid by estimating each example's gradient with its own f_b.  So, by default
  (``per_example = True``), each example of the batch is its own part (:meth:`WorkloadProblem.parts`: one estimator
  call per example, vectorized over the R replicates, independently seeded) and :meth:`~WorkloadProblem.gather`
  concatenates the N results.  The per-call time (R = 1) is that of the N calls in sequence — what a training
  step using that estimator this way would pay.  ``per_example = False`` measures the batch objective as one part.
* Rows (:meth:`~WorkloadProblem.readouts`): param ``eta`` (all η coordinates of the batch, flattened) and param
  ``encoder`` (the chain-ruled encoder-weight gradient, :mod:`harness.workloads.chain`, whose time on one
  replicate is added to the encoder rows' per-call time), each with ``workload``, ``workload_config``,
  ``checkpoint``, ``per_example``, ``n_coords`` and ``variance_total`` (the trace) and the truth's own uncertainty
  (``truth_se_max``, ``bias_z_truth``, ``truth_too_imprecise``: see :func:`harness.results.cell_rows`).
* Fixed R: the precision loop does not apply (every example needs the same replicates), ``adaptive = False``.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from harness.backends import get_backend
from harness.files.cache import digest
from harness.problems import DISTRIBUTIONS, jsonable
from harness.problems.base import ProblemShape
from harness.problems.exact import ExactResult
from harness.problems.target import Part, Readout, Traits, part_seed
from harness.targets.workload_truth import TRUTHS, choose_method, example_truth, joined, method_for
from harness.training.checkpoints import load_state
from harness.workloads import get_workload
from harness.workloads.base import SPLITS, NegElbo, Workload, WorkloadError
from harness.workloads.chain import encoder_grads, flat, jacobian


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
    per_example: bool = True  # estimate each example's gradient with its own f_b (module docstring)
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
        """The target at its checkpoint's weights, or at ``state`` (then ``weights`` must be its digest)."""
        return WorkloadProblem(self, state)

    def traits(self) -> Traits:
        return get_workload(self.workload).traits()

    # the identity fields a suite's [[exclude]] tables match
    @property
    def distribution(self) -> str:
        return get_workload(self.workload).latent

    @property
    def objective(self) -> str:
        return "neg_elbo"

    @property
    def dim(self) -> int:
        wl = get_workload(self.workload)
        shape = wl.latent_shape(wl.resolve(self.config))
        return (1 if self.example is not None else (self.batch_size or wl.default_batch)) * shape[0]

    def fields(self) -> dict[str, Any]:
        return {
            "distribution": self.distribution,
            "objective": self.objective,
            "dim": self.dim,
            "workload": self.workload,
            "checkpoint": self.checkpoint,
        }

    def label(self) -> str:
        wl = get_workload(self.workload)
        cfg = ",".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        ex = f"#{self.example}" if self.example is not None else ""
        split, bs = self.split or wl.default_split, self.batch_size or wl.default_batch
        at = f"weights:{self.weights[:8]}" if self.weights else self.checkpoint
        return f"{self.workload}({cfg})@{at}/{split}[{bs}]{ex}"

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


_ENCODER_TRUTH: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()  # WorkloadProblem._encoder_truth


def check_spec(spec: WorkloadSpec) -> tuple[Workload, dict[str, Any], str, int]:
    """Validate a spec without training anything: (workload, resolved config, split, batch size)."""
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
    """A workload at a checkpoint (or at given weights) on a batch, measured like a :class:`harness.problems.Problem`."""

    adaptive = False  # every example's part needs the same replicates: no precision loop

    def __init__(self, spec: WorkloadSpec, state: Mapping[str, np.ndarray] | None = None) -> None:
        self.spec = spec
        wl, cfg, split, bs = check_spec(spec)
        self.workload, self.cfg = wl, cfg
        data = wl.dataset(cfg)[split]
        idx = np.random.default_rng(spec.batch_seed).choice(len(next(iter(data.values()))), size=bs, replace=False)
        raw = {k: np.asarray(v[idx], dtype=np.float64) for k, v in data.items()}
        x = wl.prepare_batch(raw, np.random.default_rng([spec.batch_seed, 1]), cfg)  # whole batch: same draws
        if spec.example is not None:
            idx = idx[[spec.example]]
            x = {k: v[[spec.example]] for k, v in x.items()}
        self.x = x
        if state is None:
            if spec.weights:
                raise WorkloadError("weights", "a spec naming its weights by digest needs them: workload_problem_at")
            state = self.weights(wl, cfg, spec.checkpoint)
        self.state = {k: np.asarray(v, np.float64) for k, v in state.items()}
        self.state_digest = digest(self.state)
        if spec.weights and spec.weights != self.state_digest:
            raise WorkloadError("weights", f"digest {spec.weights[:12]}... does not match the weights given")
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

    @staticmethod
    def weights(wl: Workload, cfg: Mapping[str, Any], checkpoint: int) -> dict[str, np.ndarray]:
        """The model weights after ``checkpoint`` training steps: the one call into the checkpoint provider."""
        return load_state(wl, cfg, checkpoint)

    def _np_call(self, fn: Any, *args: Any) -> Any:
        """``fn(B, *args)`` on the workload's evaluation backend in float64, NumPy in and out."""
        B = self.eval_backend

        def conv(a: Any) -> Any:
            if isinstance(a, Mapping):
                return {k: conv(v) for k, v in a.items()}
            return B.asarray(a, "float64", "cpu") if isinstance(a, np.ndarray) else a

        out = fn(B, *[conv(a) for a in args])
        if isinstance(out, Mapping):
            return {k: np.asarray(B.to_numpy(v), dtype=np.float64) for k, v in out.items()}
        return np.asarray(B.to_numpy(out), dtype=np.float64)

    def f_np(self, z: np.ndarray) -> np.ndarray:
        """f(z) [R, L] for z [R, L, *event] as float64 NumPy (truth computations)."""
        return self._np_call(self.objective, z, self.op)

    def label(self) -> str:
        return self.spec.label()

    def compile_key(self) -> dict[str, Any]:
        """The model and the shapes only: data, weights and η reach a compiled call as arguments (``params_np`` and
        ``op``), so every example, batch and checkpoint of one configuration shares one compilation."""
        return {
            "workload": self.workload.name,
            "config": jsonable(dict(sorted(self.cfg.items()))),
            "n": self.n,
            "latent": list(self.latent),
            "op": {k: list(np.shape(v)) for k, v in sorted(self.op.items())},
        }

    def examples(self) -> list[WorkloadProblem]:
        """One-example problems (each example's own f_b), in batch order, at the same weights."""
        if self.spec.example is not None:
            return [self]
        return [WorkloadProblem(replace(self.spec, example=i), self.state) for i in range(self.n)]

    @cached_property
    def exact(self) -> ExactResult:
        """The truth: per example, exact by enumeration, a workload's quadrature or a long reference estimate."""
        if self.spec.example is not None:
            return example_truth(self)
        return joined([ex.exact for ex in self.examples()], choose_method(self))

    # -- what the runner measures (harness.problems.target.Built) -----------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "distribution": self.dist.name,
            "objective": self.objective.name,
            "dim": self.dim,
            "problem": self.label(),
        }

    def parameter_columns(self) -> dict[str, Any]:
        return {}  # η and the weights are arrays: the rows name the workload, its config and checkpoint instead

    def parts(self, seed: int) -> list[Part]:
        subs = self.examples() if self.spec.per_example else [self]
        return [Part(sub, part_seed(seed, i)) for i, sub in enumerate(subs)]

    def gather(self, estimates: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([p[k] for p in estimates], axis=1) for k in self.param_names}

    def _encoder_truth(self, ex: ExactResult, se_eta: np.ndarray, backend: str) -> tuple[np.ndarray, np.ndarray]:
        """The encoder weights' truth and its standard errors (the η truth chain-ruled; its SEs through the squared
        Jacobian), the same for every cell on this target: kept for the next cell (a D = 200 workload's dense
        Jacobian is 800 × 157 000, 3–6 s to build on this machine, and every estimator's cell needed it)."""
        names, enc = self.param_names, list(self.encoder_params)
        truth = digest({**{f"grad:{k}": ex.grads[k] for k in names}, "se": se_eta})
        key = json.dumps([self.spec.key(), self.state_digest, backend, id(self.workload), truth])
        got = _ENCODER_TRUTH.get(key)
        if got is None:
            e_enc = flat(encoder_grads(self, {k: ex.grads[k][None] for k in names}, backend), enc)[0]
            se_enc = np.sqrt(jacobian(self).T ** 2 @ se_eta**2) if se_eta.any() else np.zeros_like(e_enc)
            got = _ENCODER_TRUTH[key] = (e_enc, se_enc)
            while len(_ENCODER_TRUTH) > 8:
                _ENCODER_TRUTH.popitem(last=False)
        _ENCODER_TRUTH.move_to_end(key)
        return got

    def readouts(self, G: dict[str, np.ndarray], backend: str) -> list[Readout]:
        """Rows ``eta`` (the batch's η-gradient, flattened) and ``encoder`` (chain-ruled on ``backend``)."""
        names, enc = self.param_names, list(self.encoder_params)
        ex = self.exact
        G_eta = flat(G, names)
        e_eta = np.concatenate([ex.grads[k].ravel() for k in names])
        G_enc = flat(encoder_grads(self, G, backend), enc)
        se = ex.extra.get("se", {})
        se_eta = np.concatenate([np.asarray(se.get(k, np.zeros_like(ex.grads[k]))).ravel() for k in names])
        e_enc, se_enc = self._encoder_truth(ex, se_eta, backend)
        columns = {
            "workload": self.workload.name,
            "workload_config": json.dumps(dict(self.spec.config), sort_keys=True),
            "checkpoint": self.spec.checkpoint,
            "per_example": self.spec.per_example,
        }
        one = {k: G[k][:1] for k in names}
        out = []
        for name, g, e, s, post in (
            ("eta", G_eta, e_eta, se_eta, None),
            ("encoder", G_enc, e_enc, se_enc, lambda: encoder_grads(self, one, backend)),
        ):
            truth = ExactResult(ex.value, {name: e}, ex.method, ex.abs_err, {"se": {name: s}})
            out.append(Readout({name: g}, truth, columns, totals=True, post=post))
        return out
