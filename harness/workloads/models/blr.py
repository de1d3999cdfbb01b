"""Bayesian logistic regression on scikit-learn's breast_cancer with a mean-field Gaussian q(w).

p(w) = N(0, prior_scale² I) over the 30 standardized features and an intercept; p(y | X, w) Bernoulli with
logits Xw; q(w) = N(loc, scale²) with scale = softplus(raw).  The "encoder" is just the variational
parameters (loc, raw), and the "batch" is one example: the whole split (the ELBO's data term sums over it).
The training split is the default evaluation split (the ELBO being optimized).  Truth: 1-D quadrature per
data point (``harness.targets.workload_truth``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from scipy import special

from harness.workloads import data, register_workload
from harness.workloads.base import Workload, WorkloadError


class BayesianLogReg(Workload):
    name = "blr"
    latent = "normal"
    defaults = {
        "prior_scale": 1.0,
        "data_seed": 0,
        "init_seed": 0,
        "train_seed": 0,
        "lr": 0.01,
        "init_scale": 1.0,  # initial q scale
        "train_batch": 1,  # examples per step (the one example is the whole split: full-batch)
        "train_samples": 1,
        "reference_samples": 20000,
    }
    default_split = "train"
    default_batch = 1
    train_estimator = "pathwise"
    doc = "Bayesian logistic regression on breast_cancer (30 features + intercept), N(0, 1) prior, mean-field q"

    def check(self, cfg: Mapping[str, Any]) -> None:
        for k in ("prior_scale", "lr", "init_scale"):
            if not cfg[k] > 0:
                raise WorkloadError(f"config.{k}", f"must be > 0, got {cfg[k]!r}")
        for k in ("train_batch", "train_samples", "reference_samples"):
            if not isinstance(cfg[k], int) or cfg[k] < 1:
                raise WorkloadError(f"config.{k}", f"must be a positive integer, got {cfg[k]!r}")

    def latent_shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (31,)

    def dataset(self, cfg: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for k, (X, y) in data.breast_cancer(cfg["data_seed"]).items():
            Xi = np.concatenate([X, np.ones((len(X), 1))], axis=1)
            out[k] = {"X": Xi[None], "y": y[None]}
        return out

    def init_params(self, cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
        raw = math.log(math.expm1(cfg["init_scale"]))
        return {"q_loc": 0.1 * rng.standard_normal(31), "q_raw": np.full(31, raw)}

    def param_shapes(self, cfg: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        return {"q_loc": (31,), "q_raw": (31,)}

    def encoder_keys(self, cfg: Mapping[str, Any]) -> list[str]:
        return ["q_loc", "q_raw"]

    def encode(self, B: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict:
        base = array_namespace(x["y"]).zeros_like(x["y"][:, :1])  # [N, 1]: one row of η per example
        return {"loc": base + params["q_loc"], "scale": base + B.softplus(params["q_raw"])}

    def log_joint(self, B: Any, z: Any, params: Mapping[str, Any], x: Mapping[str, Any], cfg: Mapping[str, Any]) -> Any:
        xp = array_namespace(z)  # the array API standard: the same code on numpy, torch and jax
        a = z @ xp.matrix_transpose(x["X"][0])  # [..., 1, n]: one GEMM (the one example, N = 1, is the whole split)
        ll = xp.sum(x["y"] * a - B.softplus(a), axis=-1)
        s = cfg["prior_scale"]
        prior = xp.sum(-0.5 * (z / s) ** 2, axis=-1)
        return ll + prior - z.shape[-1] * (math.log(s) + 0.5 * math.log(2 * math.pi))

    def log_joint_grad_np(self, z: np.ndarray, params: Mapping, x: Mapping, cfg: Mapping[str, Any]) -> np.ndarray:
        r = x["y"] - special.expit(z @ x["X"][0].T)  # [..., 1, n]
        return r @ x["X"][0] - z / cfg["prior_scale"] ** 2

    def encoder_vjp_np(self, params: Mapping, x: Mapping, G: Mapping[str, np.ndarray], cfg: Mapping[str, Any]) -> dict:
        return {"q_loc": G["loc"].sum(1), "q_raw": G["scale"].sum(1) * special.expit(params["q_raw"])}


def _register() -> None:
    register_workload(BayesianLogReg)


_register()


GRID = (1001, 2001)  # trapezoid points on ε ∈ [−12, 12]; the difference of the two is the reported error


def _gh_moments(mu: np.ndarray, sd: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E[softplus(a)], E[σ(a)], E[σ(a)·ε] for a = mu + sd·ε, ε ~ N(0, 1), per entry.

    Trapezoid rule on a uniform ε grid: the integrands are analytic in a strip, so the error falls like
    exp(−2π·d/h) (d = π/σ, the distance of softplus's nearest singularity), far faster than Gauss–Hermite
    for the wide σ of an untrained q.
    """
    x = np.linspace(-12.0, 12.0, n)
    w = np.exp(-0.5 * x * x)
    w = w / w.sum()
    a = mu[..., None] + sd[..., None] * x
    return (np.logaddexp(0, a) @ w, special.expit(a) @ w, (special.expit(a) * x) @ w)


def quadrature_truth(self: BayesianLogReg, problem: Any) -> tuple[float, dict[str, np.ndarray], float]:
    """E_q[f] and its (loc, scale) gradient: the data term by 1-D quadrature per data point.

    a_n = x_n·w ~ N(μ_n = x_n·m, σ_n² = Σ_d x_nd² s_d²); prior and log q (η fixed: ∂_s E[log q₀] = −1/s)
    in closed form.
    """
    X, y = problem.x["X"][0], problem.x["y"][0]
    m, s = problem.params_np["loc"], problem.params_np["scale"]
    sp2 = problem.cfg["prior_scale"] ** 2
    mu, sd = X @ m, np.sqrt((X**2) @ (s**2))
    out = []
    for n in GRID:
        e_sp, e_sig, e_sige = _gh_moments(mu, sd, n)
        ell = float(y @ mu - e_sp.sum())
        g_m = X.T @ (y - e_sig)
        g_s = -((X**2).T @ (e_sige / sd)) * s  # ∂σ_n/∂s_d = x_nd² s_d / σ_n; ∂E[softplus]/∂σ_n = E[σ(a)ε]
        P = m.size
        elp = float(-(m @ m + s @ s) / (2 * sp2) - P * (0.5 * np.log(sp2) + 0.5 * np.log(2 * np.pi)))
        elq = float(-np.log(s).sum() - 0.5 * P - 0.5 * P * np.log(2 * np.pi))
        value = -ell - elp + elq
        grads = {"loc": -g_m + m / sp2, "scale": -g_s + s / sp2 - 1.0 / s}
        out.append((value, grads))
    (v1, g1), (v2, g2) = out
    err = max(abs(v1 - v2), *(float(np.abs(g1[k] - g2[k]).max()) for k in g1))
    return v2, g2, err


BayesianLogReg.quadrature_truth = quadrature_truth  # type: ignore[attr-defined]
