"""One training run segment in PyTorch (CPU, float64): Adam on the negative ELBO with the declared estimator.

See :mod:`harness.workloads.checkpoints` for the estimators, the per-step seeding and the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.workloads.base import Workload, WorkloadError


def _objective(
    wl: Workload, cfg: Mapping[str, Any], B: Any, z: Any, params: dict, x: dict, eta_fixed: dict, dist: Any
) -> Any:
    """Per-example f_b(z) [L, N] for z [L, N, *latent] (η fixed inside log q; decoder weights attached)."""
    return dist.logpdf_elem(B, z, eta_fixed).sum(-1) - wl.log_joint(B, z, params, x, cfg)


def surrogate_loss(wl: Workload, cfg: Mapping[str, Any], params: dict, x: dict, rng: np.random.Generator) -> Any:
    """A scalar whose gradient is the batch-mean gradient estimate (encoder via η, decoder by autograd)."""
    from harness.backends import get_backend
    from harness.problems import DISTRIBUTIONS

    B = get_backend("torch")
    dist = DISTRIBUTIONS[wl.latent]
    est = wl.train_estimator
    if est not in TRAIN_ESTIMATORS_OK or not (wl.latent in TRAIN_ESTIMATORS_OK[est] or "*" in TRAIN_ESTIMATORS_OK[est]):
        raise WorkloadError(
            "train_estimator", f"{est!r} cannot train {wl.latent} latents; valid: {TRAIN_ESTIMATORS_OK}"
        )
    eta = wl.encode(B, params, x, cfg)
    fixed = {k: v.detach() for k, v in eta.items()}
    latent = tuple(wl.latent_shape(cfg))
    N = next(iter(eta.values())).shape[0]
    flat = {k: v.reshape(1, N * latent[0], *latent[1:]) for k, v in fixed.items()}
    noise = B.numpy_noise(rng, "float64", "cpu")
    L = int(cfg.get("train_samples", 1))

    def per_example(z: Any) -> Any:
        return z.reshape(z.shape[0], N, *latent)

    if est == "pathwise":
        eps = per_example(noise.normal((1, L, N * latent[0]))[0])
        f = _objective(wl, cfg, B, eta["loc"] + eta["scale"] * eps, params, x, fixed, dist)
        return f.mean(0).sum() / N
    if est == "disarm":
        th = fixed["logits"]
        u = per_example(noise.uniform((1, L, N * latent[0]))[0])
        b = (u < B.sigmoid(th)).to(th.dtype)
        bt = (u > B.sigmoid(-th)).to(th.dtype)
        fb, fbt = _objective(wl, cfg, B, b, params, x, fixed, dist), _objective(wl, cfg, B, bt, params, x, fixed, dist)
        g = (0.5 * (fb - fbt).detach()[..., None] * (b - bt) * B.sigmoid(th.abs())).mean(0)
        return (0.5 * (fb + fbt)).mean(0).sum() / N + (g * eta["logits"]).sum() / N
    if L < 2:
        raise WorkloadError("config.train_samples", f"score_function_rloo needs train_samples >= 2, got {L}")
    z = per_example(dist.sample(B, noise, flat, L)[0])
    f = _objective(wl, cfg, B, z, params, x, fixed, dist)
    w = ((f - f.mean(0)) * (L / (L - 1))).detach()
    logq = dist.logpdf_elem(B, z, eta).sum(-1)
    return f.mean(0).sum() / N + (w * logq).mean(0).sum() / N


TRAIN_ESTIMATORS_OK = {"pathwise": ("normal",), "disarm": ("bernoulli",), "score_function_rloo": ("*",)}


def train(
    wl: Workload, cfg: Mapping[str, Any], full: Mapping[str, np.ndarray], start: int, stop: int
) -> dict[str, np.ndarray]:
    """Steps start..stop-1 from the checkpoint ``full`` (``p/`` weights, ``m/``, ``v/`` Adam moments)."""
    import torch

    names = [k[2:] for k in full if k.startswith("p/")]
    params = {k: torch.tensor(full[f"p/{k}"], dtype=torch.float64, requires_grad=True) for k in names}
    opt = torch.optim.Adam(list(params.values()), lr=float(cfg.get("lr", 1e-3)))
    if start > 0:
        for k in names:
            opt.state[params[k]] = {
                "step": torch.tensor(float(start)),
                "exp_avg": torch.tensor(full[f"m/{k}"]),
                "exp_avg_sq": torch.tensor(full[f"v/{k}"]),
            }
    data = wl.dataset(cfg)["train"]
    n = len(next(iter(data.values())))
    bs = min(int(cfg.get("train_batch", 32)), n)
    seed = int(cfg.get("train_seed", 0))
    with torch.random.fork_rng():
        for t in range(start, stop):
            rng = np.random.default_rng([seed, t])
            idx = rng.choice(n, size=bs, replace=False)
            xb = wl.prepare_batch({k: v[idx] for k, v in data.items()}, rng, cfg)
            x = {k: torch.tensor(v, dtype=torch.float64) for k, v in xb.items()}
            loss = surrogate_loss(wl, cfg, params, x, rng)
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = {f"p/{k}": v.detach().numpy().copy() for k, v in params.items()}
    for k in names:
        st = opt.state[params[k]]
        out[f"m/{k}"] = st["exp_avg"].numpy().copy()
        out[f"v/{k}"] = st["exp_avg_sq"].numpy().copy()
    return out
