"""The truth of a workload target: ∇η E_q[f] per example by enumeration, a workload's quadrature, or a reference.

- ``enumeration`` (exact): every latent configuration of one example (Bernoulli: 2^D, categorical: K^G),
  at most ``MAX_ENUMERATION`` per example; ∇η E[f] = Σ_z f(z) q(z) ∂η log q(z).
- ``quadrature``: a workload's own deterministic method (``blr``: Gauss–Hermite per data point);
  ``abs_err`` is its error estimate.
- ``reference``: ``reference_samples`` draws per example of an unbiased estimator written here, independent
  of the registered estimators it judges: for Bernoulli and categorical latents the local-expectation
  (Rao–Blackwellized per coordinate) gradient, for normal latents the reparameterization gradient (analytic
  ∂f/∂z when the workload gives one, else PyTorch autograd).  ``abs_err`` is the largest standard error;
  per-coordinate SEs are in ``extra["se"]``.  A bias verdict must compare the estimator's bias with it.

Results are cached next to the checkpoints (keyed by the workload, configuration, checkpoint, the digest of the
model weights, batch and example; checksummed files that heal, :mod:`harness.files.cache`) and memoized per process;
the batch's truth concatenates its examples'.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any

import numpy as np
from scipy import special

from harness.backends import get_backend
from harness.files.cache import cache_dir, load_npz, save_npz
from harness.problems.exact import ExactResult
from harness.workloads.base import WorkloadError

TRUTHS = ("auto", "enumeration", "reference", "quadrature")
FORMAT = 2  # of the cached truths; 2: keyed by the digest of the model weights, checksummed files
MAX_ENUMERATION = 2**12  # configurations per example
CHUNK = 512  # samples per vectorized reference chunk
_MEMO: dict[str, ExactResult] = {}


def n_configurations(latent: str, shape: tuple[int, ...]) -> float:
    """Latent configurations per example (inf for continuous latents, or past the float range: latent_dim ≥ 1024)."""
    base = 2 if latent == "bernoulli" else shape[1] if latent == "categorical" else 0
    if base < 1:
        return math.inf
    if shape[0] * math.log2(max(base, 1)) >= 1023:
        return math.inf
    return float(base ** shape[0])


def choose_method(problem: Any) -> str:
    """The truth method for ``problem.spec.truth`` (auto picks the most exact available); errors if impossible."""
    return method_for(problem.workload, problem.latent, problem.spec.truth)


def method_for(wl: Any, shape: tuple[int, ...], want: str) -> str:
    m = n_configurations(wl.latent, shape)
    has_quad = hasattr(wl, "quadrature_truth")
    if want == "enumeration" and m > MAX_ENUMERATION:
        raise WorkloadError(
            "truth",
            f"enumeration needs <= {MAX_ENUMERATION} latent configurations per example; {wl.name} has "
            f"{m:.3g} (latent {wl.latent} {tuple(shape)}); use truth = 'reference' or a smaller latent space",
        )
    if want == "quadrature" and not has_quad:
        raise WorkloadError("truth", f"{wl.name} has no quadrature truth; valid: ['auto', 'enumeration', 'reference']")
    if want != "auto":
        return want
    return "enumeration" if m <= MAX_ENUMERATION else "quadrature" if has_quad else "reference"


def joined(parts: list[ExactResult], method: str) -> ExactResult:
    """A batch's truth from its examples' (in batch order): gradients and standard errors concatenated."""
    grads = {k: np.concatenate([p.grads[k] for p in parts]) for k in parts[0].grads}
    se = {k: np.concatenate([p.extra.get("se", {}).get(k, np.zeros_like(p.grads[k])) for p in parts]) for k in grads}
    return ExactResult(float(sum(p.value for p in parts)), grads, method, max(p.abs_err for p in parts), {"se": se})


def example_truth(problem: Any) -> ExactResult:
    """The truth of a one-example workload problem (memoized, cached on disk next to the checkpoints)."""
    method = choose_method(problem)
    key = _key(problem, method)
    if key in _MEMO:
        return _MEMO[key]
    path = cache_dir() / f"{problem.workload.name}-truth-{key}.npz"
    got = load_npz(path)
    if got is None:
        res = {"enumeration": _enumerate, "reference": _reference, "quadrature": _quadrature}[method](problem)
        save_npz(
            path,
            {
                "value": np.float64(res.value),
                "abs_err": np.float64(res.abs_err),
                **{f"g/{k}": v for k, v in res.grads.items()},
                **{f"se/{k}": v for k, v in res.extra.get("se", {}).items()},
            },
        )
    else:
        res = ExactResult(
            float(got["value"]),
            {k[2:]: v for k, v in got.items() if k.startswith("g/")},
            method,
            float(got["abs_err"]),
            {"se": {k[3:]: v for k, v in got.items() if k.startswith("se/")}},
        )
    _MEMO[key] = res
    return res


def _key(problem: Any, method: str) -> str:
    """What the truth depends on: the batch, the configuration, the method and the weights themselves (their
    digest, so a target built at weights its checkpoint number does not determine never reads or writes another's)."""
    d = {
        **problem.spec.to_dict(),
        "config": problem.cfg,
        "method": method,
        "weights": problem.state_digest,
        "format": FORMAT,
    }
    if problem.workload.fingerprint:  # a user's model: its data and code too (harness.workloads.functional)
        d["model"] = problem.workload.fingerprint
    d.pop("per_example", None)
    d.pop("truth", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _np() -> Any:
    return get_backend("numpy")


def _configs(latent: str, shape: tuple[int, ...]) -> np.ndarray:
    if latent == "bernoulli":
        D = shape[0]
        return ((np.arange(2**D)[:, None] >> np.arange(D)) & 1).astype(np.float64)
    G, K = shape
    eye = np.eye(K)
    return np.array([[eye[j] for j in combo] for combo in itertools.product(range(K), repeat=G)])


def _enumerate(problem: Any) -> ExactResult:
    B, dist = _np(), problem.dist
    Z = _configs(problem.workload.latent, problem.latent)  # [M, *latent], one example
    f = problem.f_np(Z[None])[0]
    eta = {k: v[0] for k, v in problem.eta.items()}
    q = np.exp(dist.logpdf_elem(B, Z, eta).sum(-1))
    p = eta["logits"]
    score = Z - (special.expit(p) if dist.name == "bernoulli" else special.softmax(p, axis=-1))
    grad = np.tensordot(q * f, score, axes=(0, 0))
    return ExactResult(float(q @ f), {"logits": grad.reshape(problem.params_np["logits"].shape)}, "enumeration")


def _quadrature(problem: Any) -> ExactResult:
    value, grads, err = problem.workload.quadrature_truth(problem)
    return ExactResult(float(value), grads, "quadrature", float(err))


def _reference(problem: Any) -> ExactResult:
    S = int(problem.cfg.get("reference_samples", 4000))
    rng = np.random.default_rng([20261128, problem.spec.example or 0])
    samples: dict[str, list[np.ndarray]] = {}
    values: list[np.ndarray] = []
    for start in range(0, S, CHUNK):
        n = min(CHUNK, S - start)
        g, v = {"bernoulli": _local_bernoulli, "categorical": _local_categorical, "normal": _reparam}[
            problem.dist.name
        ](problem, rng, n)
        for k, a in g.items():
            samples.setdefault(k, []).append(a)
        values.append(v)
    G = {k: np.concatenate(v) for k, v in samples.items()}
    se = {k: v.std(0, ddof=1) / np.sqrt(S) for k, v in G.items()}
    grads = {k: v.mean(0) for k, v in G.items()}
    err = max(float(s.max()) for s in se.values())
    return ExactResult(float(np.concatenate(values).mean()), grads, "reference", err, {"se": se, "samples": S})


def _local_bernoulli(problem: Any, rng: np.random.Generator, n: int) -> tuple[dict, np.ndarray]:
    """σ'(η_d)·[f(z_{d←1}) − f(z_{d←0})] with z_{−d} ~ q: unbiased, per coordinate."""
    p = problem.params_np["logits"]
    D = p.shape[0]
    pr = special.expit(p)
    Z = (rng.random((n, D)) < pr).astype(np.float64)
    Zs = np.repeat(Z[:, None, :], D, axis=1)
    Z1, Z0 = Zs.copy(), Zs.copy()
    Z1[:, np.arange(D), np.arange(D)] = 1.0
    Z0[:, np.arange(D), np.arange(D)] = 0.0
    F1, F0 = problem.f_np(Z1), problem.f_np(Z0)  # [n, D]
    return {"logits": pr * (1 - pr) * (F1 - F0)}, problem.f_np(Z[:, None])[:, 0]


def _local_categorical(problem: Any, rng: np.random.Generator, n: int) -> tuple[dict, np.ndarray]:
    """q_gk·[f(z_{g←k}) − Σ_j q_gj f(z_{g←j})] with the other groups ~ q."""
    p = problem.params_np["logits"]
    G, K = p.shape
    q = special.softmax(p, axis=-1)
    idx = (rng.random((n, G, 1)) > np.cumsum(q, -1)[None]).sum(-1).clip(max=K - 1)  # inverse CDF
    Z = np.eye(K)[idx]  # [n, G, K]
    Zs = np.broadcast_to(Z[:, None, None], (n, G, K, G, K)).copy()
    Zs[:, np.arange(G), :, np.arange(G), :] = np.eye(K)[None, None]  # group g set to category k
    F = problem.f_np(Zs.reshape(n, G * K, G, K)).reshape(n, G, K)
    g = q * (F - (q * F).sum(-1, keepdims=True))
    return {"logits": g}, problem.f_np(Z[:, None])[:, 0]


def _reparam(problem: Any, rng: np.random.Generator, n: int) -> tuple[dict, np.ndarray]:
    """∂f/∂z at z = loc + scale·ε: (∇f, ∇f·ε) for (loc, scale)."""
    mu, s = problem.params_np["loc"], problem.params_np["scale"]
    eps = rng.standard_normal((n, *mu.shape))
    z = mu + s * eps
    obj = problem.objective
    if obj.grad_np is not None:
        g = obj.grad_np(z[:, None], problem.op)[:, 0]
        f = problem.f_np(z[:, None])[:, 0]
    else:
        import torch

        T = get_backend("torch")
        zt = torch.tensor(z[:, None], dtype=torch.float64, requires_grad=True)
        op = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in problem.op.items()}
        ft = obj(T, zt, op)
        (gt,) = torch.autograd.grad(ft.sum(), zt)
        g, f = gt.numpy()[:, 0], ft.detach().numpy()[:, 0]
    return {"loc": g, "scale": g * eps}, f
