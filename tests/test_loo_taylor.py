"""double_cv and rodeo (RLOO with Taylor-surrogate control variates): what the registry battery cannot check.

- declared capabilities;
- per-sample formulas on fixed noise against a hand computation with explicit loops over samples, sites and
  neighbours (the Stein operator applied to the surrogate as a Python function, κ from the kernel's definition,
  the double-CV correction by finite differences of E_q[c]), every kernel and both expansion points, Bernoulli and
  categorical, 3 backends;
- exact identities: α = β = 0 is RLOO draw for draw; on a linear f double CV (α = 1) is the exact gradient and
  RODEO's Gibbs baseline (α = 1, β = 0) is E[f], so RODEO equals the oracle-baseline estimator draw for draw;
  every kernel's operator has mean zero under q, by enumeration (E_q[A h] = 0 for an arbitrary h);
- unbiasedness of non-default settings (kernels, fixed and fitted coefficients, K = 2 and 5) against enumeration:
  Bonferroni t-test with a power check; the fitted coefficients reduce the variance below RLOO's (z > 3) and are
  deterministic and identical on every backend.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special

import stochgrad as sg
from estimators._coefficient_fit import fit_log
from estimators.loo_taylor import KERNELS, kernel_weights
from tests.support.estimator_calls import BACKENDS, check, context, estimates, get_estimator, run_fixed, uniform

NAMES = ("double_cv", "rodeo")
BERN = sg.problem("bernoulli", objective="quadratic", dim=3, logits=[-1.0, 0.3, 2.0], objective_params={"k": 0.2})
CAT = sg.problem("categorical", objective="categorical_target", dim=2, logits=[[0.5, -0.5, 1.0], [0.0, 1.0, -1.0]])
LINEAR = sg.problem("bernoulli", objective="linear", dim=3, logits=[-1.0, 0.3, 2.0], objective_params={"a": 1.5})
Z_VAR = 3.0  # one-sided z for "variance below RLOO's"


def test_declared_capabilities() -> None:
    for name in NAMES:
        for b in BACKENDS:
            spec = get_estimator(name, b)
            assert spec.unbiased and spec.min_samples == 2 and spec.requires == ("differentiable",)
            assert set(spec.distributions) == {"bernoulli", "categorical"} and spec.reference and spec.doc
            assert spec.hyperparameters["coefficients"].default == "fitted"
    assert get_estimator("rodeo", "numpy").hyperparameters["kernel"].choices == KERNELS


# -- hand computations ---------------------------------------------------------------------------------------
def _samples(problem, L: int, R: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The samples the estimator draws first from the seed's stream, and the site probabilities."""
    cat = problem.dist.name == "categorical"
    th = problem.params_np["logits"]
    rng = np.random.default_rng(seed)
    if cat:
        g = -np.log(-np.log(uniform(rng, (R, L, *th.shape))))
        return np.eye(th.shape[-1])[np.argmax(th + g, -1)], special.softmax(th, -1), True
    return (uniform(rng, (R, L, th.size)) < special.expit(th)).astype(float), special.expit(th), False


def _fgrad(problem, x: np.ndarray) -> tuple[float, np.ndarray]:
    """f and ∂f/∂x at one sample, written out for the two objectives used here."""
    name, op = problem.objective.name, problem.op
    t = op["target"] if name == "categorical_target" else op.get("k", 0.0)
    if name == "linear":
        return float(op["a"] * x.sum()), np.full_like(x, op["a"])
    return float(((x - t) ** 2).sum()), 2 * (x - t)


def _neighbours(x: np.ndarray, p: np.ndarray, cat: bool, kernel: str) -> list[tuple[np.ndarray, float]]:
    """(y, κ(x, y)) for every y that changes one site of x, κ from the kernel's definition."""
    out = []
    for i in range(x.shape[0]):
        values = [v for v in range(x.shape[1]) if x[i, v] == 0] if cat else [1 - x[i]]
        for v in values:
            y = x.copy()
            if cat:
                y[i] = np.eye(x.shape[1])[v]
                qv, qx = p[i, v], p[i][x[i] > 0.5][0]
            else:
                y[i] = v
                qv = p[i] if v == 1 else 1 - p[i]
                qx = 1 - qv
            k = {"gibbs": qv, "barker": qv / (qv + qx), "mpf": math.sqrt(qv / qx)}[kernel]
            out.append((y, k))
    return out


def _hand_rodeo(problem, L: int, R: int, seed: int, kernel: str, alpha: float, beta: float, center: str) -> np.ndarray:
    xs, p, cat = _samples(problem, L, R, seed)
    out = np.zeros((R, *p.shape))
    for r in range(R):
        fg = [_fgrad(problem, xs[r, k]) for k in range(L)]
        f = np.array([v for v, _ in fg])
        at = [p if center == "mean" else xs[r, j] for j in range(L)]  # expansion points
        ell = [  # ℓ_k(y) = mean_{j≠k} G_j·(y − a_j), a_j = μ or x_j
            (lambda y, k=k: np.mean([(fg[j][1] * (y - at[j])).sum() for j in range(L) if j != k])) for k in range(L)
        ]
        nb = [_neighbours(xs[r, k], p, cat, kernel) for k in range(L)]
        a = np.array([sum(kap * (ell[k](y) - ell[k](xs[r, k])) for y, kap in nb[k]) for k in range(L)])
        for k in range(L):
            x = xs[r, k]
            b = np.mean([f[j] + alpha * a[j] for j in range(L) if j != k])
            AH = sum(kap * (ell[k](y) * (y - p) - ell[k](x) * (x - p)) for y, kap in nb[k])
            out[r] += ((f[k] - b) * (x - p) + beta * AH) / L
    return out


def _hand_dcv(problem, L: int, R: int, seed: int, alpha: float) -> np.ndarray:
    xs, p, cat = _samples(problem, L, R, seed)
    th = problem.params_np["logits"]
    probs = (lambda t: special.softmax(t, -1)) if cat else special.expit
    out = np.zeros((R, *p.shape))
    h = 1e-6
    for r in range(R):
        fg = [_fgrad(problem, xs[r, k]) for k in range(L)]
        Gm = [np.mean([fg[j][1] for j in range(L) if j != k], 0) for k in range(L)]
        c = [(Gm[k] * (xs[r, k] - p)).sum() for k in range(L)]
        resid = [fg[k][0] - alpha * c[k] for k in range(L)]
        for k in range(L):
            b = np.mean([resid[j] for j in range(L) if j != k])
            corr = np.zeros_like(th)  # ∇θ E_q[c_k] = ∇θ Ḡ_{-k}·(p(θ) − μ) by central differences
            for idx in np.ndindex(th.shape):
                e = np.zeros_like(th)
                e[idx] = h
                corr[idx] = ((Gm[k] * probs(th + e)).sum() - (Gm[k] * probs(th - e)).sum()) / (2 * h)
            out[r] += ((resid[k] - b) * (xs[r, k] - p) + alpha * corr) / L
    return out


@pytest.mark.parametrize("problem", [BERN, CAT], ids=["bernoulli", "categorical"])
@pytest.mark.parametrize(("kernel", "center"), [(k, "mean") for k in KERNELS] + [("gibbs", "samples")])
def test_rodeo_per_sample_formula(problem, kernel: str, center: str) -> None:
    L, R, seed, alpha, beta = 3, 4, 21, 0.7, -1.3
    hand = _hand_rodeo(problem, L, R, seed, kernel, alpha, beta, center)
    hyper = {"kernel": kernel, "center": center, "coefficients": "fixed", "alpha": alpha, "beta": beta}
    for b in BACKENDS:
        out = run_fixed("rodeo", b, problem, L, R, seed, hyper)["logits"]
        np.testing.assert_allclose(out, hand, rtol=1e-10, atol=1e-13, err_msg=f"rodeo {kernel} {b} seed={seed}")


@pytest.mark.parametrize("problem", [BERN, CAT], ids=["bernoulli", "categorical"])
def test_double_cv_per_sample_formula(problem) -> None:
    L, R, seed, alpha = 4, 4, 22, 0.6
    hand = _hand_dcv(problem, L, R, seed, alpha)
    for b in BACKENDS:
        out = run_fixed("double_cv", b, problem, L, R, seed, {"coefficients": "fixed", "alpha": alpha})["logits"]
        np.testing.assert_allclose(out, hand, rtol=1e-7, atol=1e-9, err_msg=f"double_cv {b} seed={seed}")


@pytest.mark.parametrize("problem", [BERN, CAT], ids=["bernoulli", "categorical"])
def test_zero_coefficients_are_rloo(problem) -> None:
    seed = 23
    rloo = run_fixed("score_function_rloo", "numpy", problem, 4, 6, seed)["logits"]
    for name, hyper in (("double_cv", {"alpha": 0.0}), ("rodeo", {"alpha": 0.0, "beta": 0.0})):
        out = run_fixed(name, "numpy", problem, 4, 6, seed, {"coefficients": "fixed", **hyper})["logits"]
        np.testing.assert_allclose(out, rloo, rtol=1e-12, atol=1e-14, err_msg=f"{name} seed={seed}")


def test_linear_objective_identities() -> None:
    """Linear f: double CV at α = 1 is exact; RODEO's Gibbs baseline at α = 1 is E[f] (the oracle baseline)."""
    seed, exact = 24, LINEAR.exact.grads["logits"]
    dcv = run_fixed("double_cv", "numpy", LINEAR, 3, 50, seed, {"coefficients": "fixed", "alpha": 1.0})["logits"]
    np.testing.assert_allclose(dcv, np.broadcast_to(exact, dcv.shape), rtol=1e-12, atol=1e-14)
    oracle = run_fixed("score_function_oracle", "numpy", LINEAR, 3, 50, seed)["logits"]
    hyper = {"coefficients": "fixed", "alpha": 1.0, "beta": 0.0, "kernel": "gibbs"}
    rodeo = run_fixed("rodeo", "numpy", LINEAR, 3, 50, seed, hyper)["logits"]
    np.testing.assert_allclose(rodeo, oracle, rtol=1e-12, atol=1e-14, err_msg=f"seed={seed}")


@pytest.mark.parametrize("problem", [BERN, CAT], ids=["bernoulli", "categorical"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_stein_operator_has_mean_zero(problem, kernel: str) -> None:
    """Σ_x q(x) (A h)(x) = 0 for an arbitrary h, with κ from the estimator's own kernel_weights."""
    ctx = context(problem, "numpy", 1, 1, 0)
    th = problem.params_np["logits"]
    cat = problem.dist.name == "categorical"
    C = th.shape[-1] if cat else 2
    configs = list(itertools.product(range(C), repeat=problem.dim))
    X = np.stack([np.eye(C)[list(c)] if cat else np.array(c, float) for c in configs])[None]  # [1, N, *event]
    kap = kernel_weights(ctx.B, {"cat": cat, "x": X, "th": th[None, None]}, kernel)[0]
    logq = problem.dist.log_prob(ctx.B, X, {"logits": th[None]})[0]
    h = dict(zip(configs, np.random.default_rng(5).normal(size=len(configs))))
    total = 0.0
    for n, c in enumerate(configs):
        Ah = 0.0
        for i in range(problem.dim):
            for v in range(C) if cat else [1 - c[i]]:
                if cat and v == c[i]:
                    continue
                y = list(c)
                y[i] = v
                Ah += (kap[n, i, v] if cat else kap[n, i]) * (h[tuple(y)] - h[c])
        total += math.exp(logq[n]) * Ah
    assert abs(total) < 1e-12, f"{kernel}: E_q[A h] = {total}"


# -- unbiasedness of non-default settings ---------------------------------------------------------------------
SETTINGS = (
    [("double_cv", {"coefficients": "fixed", "alpha": 0.7}, 2), ("double_cv", {}, 5)]
    + [
        ("rodeo", {"kernel": k, **h}, L)
        for k in KERNELS
        for h, L in (({"coefficients": "fixed", "alpha": 0.7, "beta": -0.4}, 2), ({}, 5))
    ]
    + [("rodeo", {"center": "samples"}, 3)]
)
UNBIASED = [(n, h, L, p) for n, h, L in SETTINGS for p in (BERN, CAT)]
N_COORDS = sum(int(np.prod(p.params_np["logits"].shape)) for *_, p in UNBIASED)


@pytest.mark.parametrize(
    ("name", "hyper", "L", "problem"), UNBIASED, ids=[f"{n}-{h}-L{L}-{p.dist.name}" for n, h, L, p in UNBIASED]
)
def test_unbiased_non_default_settings(name: str, hyper: dict, L: int, problem) -> None:
    seed = 300 + UNBIASED.index((name, hyper, L, problem))
    res = check(name, "numpy", problem, L=L, seed=seed, hyper=hyper, n_tests=N_COORDS, max_R=400_000)
    assert res.verdict == "pass", f"{res.line()} (seed={seed})"


# -- the fit ---------------------------------------------------------------------------------------------------
def _variance_and_se(G: np.ndarray) -> tuple[float, float]:
    """Mean over coordinates of the per-coordinate variance, and its standard error (fourth moments)."""
    G = G.reshape(G.shape[0], -1)
    d2 = (G - G.mean(0)) ** 2
    s = d2.mean(1)  # per-replicate contribution to the mean variance
    return float(s.mean()), float(s.std(ddof=1) / math.sqrt(len(s)))


@pytest.mark.parametrize("name", NAMES)
def test_fitted_coefficients_lower_the_variance_below_rloo(name: str) -> None:
    L, R, seed = 4, 100_000, 31
    v, se = _variance_and_se(estimates(name, "numpy", BERN, L, R, seed)["logits"])
    v0, se0 = _variance_and_se(estimates("score_function_rloo", "numpy", BERN, L, R, seed + 1)["logits"])
    z = (v0 - v) / math.hypot(se, se0)
    assert z > Z_VAR, f"{name}: Var {v:.4g} ± {se:.2g} vs RLOO {v0:.4g} ± {se0:.2g}, z = {z:.2f} (seed={seed})"


@pytest.mark.parametrize("name", NAMES)
def test_fit_is_deterministic_cached_and_the_same_on_every_backend(name: str) -> None:
    L, R, seed = 3, 5, 33
    outs = {b: run_fixed(name, b, CAT, L, R, seed)["logits"] for b in BACKENDS}
    for b in BACKENDS[1:]:
        np.testing.assert_allclose(outs[b], outs["numpy"], rtol=1e-9, atol=1e-12, err_msg=f"{name} {b}")
    hyper = {k: v for k, v in get_estimator(name, "numpy").defaults().items() if k not in ("alpha", "beta")}
    recs = [r for r in fit_log() if (r["estimator"], r["problem"], r["L"], r["hyper"]) == (name, CAT.label(), L, hyper)]
    assert len(recs) == 1, f"{name}: fitted {len(recs)} times (cached fits are reused across backends)"
    assert recs[0]["variance"] <= recs[0]["base_variance"]
    fixed = {"coefficients": "fixed", **dict(zip(("alpha", "beta"), recs[0]["coefficients"]))}
    again = run_fixed(name, "numpy", CAT, L, R, seed, fixed)["logits"]
    np.testing.assert_allclose(again, outs["numpy"], rtol=1e-12, atol=1e-14)
