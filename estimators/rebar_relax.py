r"""REBAR and RELAX: unbiased score-function estimators with a reparameterized, fitted control variate.

For a sample b = H(z) with z the reparameterized continuous variable (Bernoulli: z = θ + logistic noise,
b = 1[z > 0]; categorical: z = log softmax(θ) + Gumbel noise, b = onehot(argmax z)) and z̃ ~ p(z | b) drawn
by the conditional reparameterization (Tucker et al. 2017, app.; Grathwohl et al. 2018, app. B), both use

.. math::
    \hat g = \frac1L\sum_l \big[f(b_l) - c(\tilde z_l)\big]\,\nabla_\theta \log p(b_l \mid \theta)
             + \nabla_\theta c(z_l) - \nabla_\theta c(\tilde z_l),

unbiased for any control variate c that does not depend on the measurement noise.  With s_λ(z) = σ(z/λ)
(Bernoulli) or softmax(z/λ) (categorical):

* ``rebar`` (Tucker et al. 2017): :math:`c(z) = \eta\, f(s_\lambda(z))`, parameters (η, λ);
* ``relax`` (Grathwohl et al. 2018): :math:`c(z) = \eta\, f(s_\lambda(z)) + r_\rho(z)`, a parametric
  surrogate :math:`r_\rho(z) = \rho_0 + \sum_m \rho_m \phi_m(s_\lambda(z))` with fixed features
  (Bernoulli: Σ_d s_d, Σ_d s_d², (Σ_d s_d)²/D; categorical: Σ_d s_dk for k < K−1, Σ_dk s_dk²) in place
  of the paper's neural network; ρ_0 acts as a constant baseline.

Requires f defined and differentiable on relaxed points ((0,1)^D, or the simplex), the parameters' score
and the conditional reparameterization (both built in for bernoulli and categorical).

**Fitting (before measurement, once per (problem, hyperparameters), cached).**  The control variate is
linear in β = (η, ρ), so for a fixed λ the trace of the single-sample estimator's covariance,
Σ_coords Var[a − Σ_j β_j C_j], is a quadratic in β minimized in closed form (least squares on the
centered per-sample terms).  λ is then chosen by minimizing that profiled variance over
t = log λ: a 9-point grid on [log λ0 − 4, log λ0 + 4] (λ0 = ``temperature``), extended outward by 4
unit-spaced points at a time while the best point sits at an edge (at most 4 times per side, so
|log λ − log λ0| ≤ 20; kept only if it lowers the best profiled variance by > 1%; :func:`search_grid`),
then ``fit_steps`` golden-section iterations in the bracket around the best grid point (``fit_temperature = False`` keeps λ = λ0).  On the D = 1 Bernoulli toy the
REBAR optimum is λ → ∞ (c(z) tends to a constant baseline, with which single-variable REINFORCE is exact),
so the search stops at the bound λ0·e²⁰; see docs/notes/reparam.md for the before/after variances.
All of it runs in NumPy float64 with the analytic gradients below, on N independent samples
(N = ``fit_samples``; 0, the default, means min(1024, max(64, 2^20 / #coordinates)): the objective sums
over coordinates, so large problems need fewer) drawn from ``numpy.random.default_rng(seed)``,
seed = SHA-256 of (problem identity,
fit hyperparameters, ``fit_seed``): deterministic, independent of the measurement noise (so the estimator
stays unbiased), and identical for all three backends (which therefore agree on identical noise).  The
result is cached in-process (:class:`stochgrad.FitCache`, declared as the estimator's fitted ``state``, which
training saves with its checkpoints and restores on resume), outside any traced function (JAX sees constants), so per-call timing is the
estimator's per-call cost; fitting time is reported by :func:`fit_log` (one record per fit, with
``seconds``) and is not part of ``time_median_s`` / ``compile_time_s``.  Control variates are fitted at
the problem's parameter values (in training they would be refitted as θ moves).

Backends: NumPy writes every gradient with the chain rule (``ctx.f_grad``, the objective's analytic derivative);
PyTorch/JAX differentiate the surrogate :math:`\mathrm{sg}[f(b) - c(\tilde z)]\log p(b) + c(z) - c(\tilde z)`
(z̃ depends on θ through the conditional reparameterization).  Same family of c on every backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from estimators._common import AUTODIFF
from stochgrad import Context, FitCache, Hyper, register_estimator

DISCRETE = ("bernoulli", "categorical")
REF_REBAR = "Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017 (NeurIPS, arXiv:1703.07370), REBAR"
REF_RELAX = "Grathwohl, Choi, Wu, Roeder & Duvenaud 2018 (ICLR, arXiv:1711.00123), RELAX"
HYPERS = {
    "temperature": Hyper(0.5, low=1e-3, high=10.0, doc="initial / centre λ0 of the temperature search"),
    "fit_temperature": Hyper(True, doc="search λ (grid + golden section on log λ); False keeps λ = λ0"),
    "fit_steps": Hyper(10, low=0, high=200, doc="golden-section iterations after the 9-point grid"),
    "fit_samples": Hyper(
        0, low=0, high=1_000_000, doc="fitting batch size; 0 = automatic: min(1024, max(64, 2^20 / #coordinates))"
    ),
    "fit_seed": Hyper(0, low=0, high=2**31, doc="extra seed for the fitting batch"),
}
FIT_KEYS = tuple(HYPERS)
GRID, HALF_WIDTH, MAX_EXTEND, EXTEND_GAIN = 9, 4.0, 4, 0.01
AUTO_SAMPLES, AUTO_ELEMENTS, AUTO_MIN = 1024, 2**20, 64


def fit_batch_size(problem: Any, fit_samples: int) -> int:
    """``fit_samples``, or with 0 the automatic size (the trace variance sums over coordinates, so
    large problems need fewer samples for the same precision of the few fitted parameters)."""
    if fit_samples:
        return int(fit_samples)
    coords = int(np.prod(problem.params_np["logits"].shape))
    return int(min(AUTO_SAMPLES, max(AUTO_MIN, AUTO_ELEMENTS // coords)))


# -- noise, samples and the conditional reparameterization (backend-generic) ------------------------
def draw(noise: Any, R: int, L: int, shape: tuple[int, ...], cat: bool) -> dict[str, Any]:
    """Base noise, always drawn in this order: first z's, then z̃'s."""
    first = noise.gumbel((R, L, *shape)) if cat else noise.uniform((R, L, *shape))
    return {"e": first, "v": noise.uniform((R, L, *shape))}


def bern_z(B: Any, th: Any, nz: dict) -> Any:
    u = nz["e"]
    return th + B.log(u) - B.xp.log1p(-u)


def bern_zt(B: Any, th: Any, b: Any, nz: dict) -> Any:
    """z̃ ~ p(z | b): log(1 + w/(1−p)) if b = 1, −log(1 + w/p) if b = 0, w = v/(1−v)."""
    v = nz["v"]
    w = v / (1.0 - v)
    return B.where(b > 0.5, B.xp.log1p(w / B.sigmoid(-th)), -B.xp.log1p(w / B.sigmoid(th)))


def cat_z(B: Any, th: Any, nz: dict) -> Any:
    return B.log_softmax(th, -1) + nz["e"]


def cat_zt(B: Any, th: Any, b: Any, nz: dict) -> Any:
    """z̃_b = −log E_b, z̃_i = −log(E_i / p_i + E_b) (i ≠ b), E = −log v."""
    E = -B.log(nz["v"])
    Eb = (b * E).sum(-1, keepdims=True)
    rest = -B.log(E * B.exp(-B.log_softmax(th, -1)) + Eb)
    return B.where(b > 0.5, -B.log(Eb), rest)


def hard(B: Any, z: Any, cat: bool) -> Any:
    z = B.stop_gradient(z)
    if cat:
        return B.one_hot(B.argmax(z, -1), z.shape[-1], z)
    return B.where(z > 0, B.xp.ones_like(z), B.xp.zeros_like(z))


def relax_s(B: Any, z: Any, lam: float, cat: bool) -> Any:
    return B.softmax(z / lam, -1) if cat else B.sigmoid(z / lam)


def features(B: Any, fs: Any, s: Any, cat: bool, relax: bool) -> list[Any]:
    """φ_j(s) values [R, L]: f(s) first (weight η); RELAX adds 1 and the surrogate's features."""
    out = [fs]
    if not relax:
        return out
    out.append(B.xp.ones_like(fs))
    if cat:
        out += [s[..., k].sum(-1) for k in range(s.shape[-1] - 1)] + [(s * s).sum(-1).sum(-1)]
    else:
        S1 = s.sum(-1)
        out += [S1, (s * s).sum(-1), S1 * S1 / s.shape[-1]]
    return out


def _feature_slopes(
    ctx: Context, s: np.ndarray, cat: bool, relax: bool, fp: np.ndarray | None = None
) -> list[np.ndarray]:
    """NumPy ∂φ_j/∂s (same shape as s), in the order of :func:`features`; ``fp`` is ∂f/∂s when already known."""
    out = [ctx.f_grad(s) if fp is None else fp]
    if not relax:
        return out
    out.append(np.zeros_like(s))
    if cat:
        out += [np.broadcast_to(np.eye(s.shape[-1])[k], s.shape) for k in range(s.shape[-1] - 1)] + [2 * s]
    else:
        S1 = s.sum(-1, keepdims=True)
        out += [np.ones_like(s), 2 * s, np.broadcast_to(2 * S1 / s.shape[-1], s.shape)]
    return out


# -- NumPy: per-sample terms a, C_j with analytic gradients ----------------------------------------
def np_terms(ctx: Context, th: np.ndarray, nz: dict, lam: float, relax: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample a = f(b)∇log p(b) [R, L, *pshape] and C [J, R, L, *pshape], so that ĝ = a − Σ β_j C_j.

    ``ctx`` is a NumPy Context (the measured one, or the fit's own): f and ∂f/∂z through ``ctx.f``/``ctx.f_grad``."""
    B = ctx.B
    cat = ctx.dist.name == "categorical"
    z = (cat_z if cat else bern_z)(B, th, nz)
    b = hard(B, z, cat)
    zt = (cat_zt if cat else bern_zt)(B, th, b, nz)
    f = ctx.f
    if cat:
        p = special.softmax(th, -1)
        E = -np.log(nz["v"])
        dzt = (1 - b) * E * np.exp(-special.log_softmax(th, -1)) * np.exp(zt)  # dz̃_i/dℓ_i

        def vjp(s: np.ndarray, q: np.ndarray) -> np.ndarray:  # (∂s/∂z)ᵀ q, softmax(z/λ)
            return s * (q - (q * s).sum(-1, keepdims=True)) / lam

        def to_theta(G: np.ndarray) -> np.ndarray:  # through ℓ = log_softmax(θ)
            return G - p * G.sum(-1, keepdims=True)
    else:
        p = special.expit(th)
        dzt = np.where(b > 0.5, -p * np.expm1(-zt), -(1 - p) * np.expm1(zt))  # dz̃/dθ

        def vjp(s: np.ndarray, q: np.ndarray) -> np.ndarray:
            return q * s * (1 - s) / lam

        def to_theta(G: np.ndarray) -> np.ndarray:
            return G

    score = b - p
    s, st = relax_s(B, z, lam, cat), relax_s(B, zt, lam, cat)
    fst, gst = ctx.f_and_grad(st)  # c(z̃) needs f and ∂f at z̃; c(z) only ∂f at z
    if relax:  # the surrogate r_ρ, evaluated at z (its gradient) and z̃ (value and gradient)
        ctx.count_aux(s)
        ctx.count_aux(st)
    vals = features(B, fst, st, cat, relax)
    qz, qt = _feature_slopes(ctx, s, cat, relax), _feature_slopes(ctx, st, cat, relax, gst)
    C = []
    for j in range(len(qz)):
        w = vals[j].reshape(vals[j].shape + (1,) * (score.ndim - 2))
        C.append(w * score - to_theta(vjp(s, qz[j])) + to_theta(vjp(st, qt[j]) * dzt))
    fb = f(b).reshape(b.shape[:2] + (1,) * (score.ndim - 2))
    return fb * score, np.stack(C)


# -- fitting (NumPy, once per problem and hyperparameters) -----------------------------------------
@dataclass(frozen=True)
class Fit:
    lam: float  # temperature λ
    beta: tuple[float, ...]  # (η, ρ_0, ρ_1, ...): weights of features()
    variance: float  # trace of the single-sample covariance on the fitting batch at (λ, β)
    base_variance: float  # same without control variate (plain REINFORCE) on that batch
    seconds: float
    evaluations: int  # profiled-variance evaluations (λ values tried)
    seed: int
    samples: int  # fitting batch size N


def _fit_json(fit: Fit) -> dict[str, Any]:
    return dataclasses.asdict(fit)


def _fit_from_json(d: dict[str, Any]) -> Fit:
    return Fit(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


FITS = {
    relax: FitCache(
        "relax" if relax else "rebar",
        _fit_json,
        _fit_from_json,
        "the control variate's temperature λ and weights β fitted per target and hyperparameters",
    )
    for relax in (False, True)
}
_LOG: list[dict[str, Any]] = []


def _profile(ctx: Context, th: np.ndarray, nz: dict, lam: float, relax: bool) -> tuple[float, np.ndarray, float]:
    """min_β trace Var[a − Σ β_j C_j] at fixed λ: (variance, β, variance without control variate)."""
    a, C = np_terms(ctx, th, nz, lam, relax)
    N = a.shape[1]
    A = (a - a.mean(1, keepdims=True)).reshape(-1)
    M = (C - C.mean(2, keepdims=True)).reshape(C.shape[0], -1).T
    beta = np.linalg.lstsq(M, A, rcond=None)[0]
    resid = A - M @ beta
    return float(resid @ resid / (N - 1)), beta, float(A @ A / (N - 1))


def _fit_seed(problem: Any, hyper: dict[str, Any]) -> int:
    blob = json.dumps({"problem": problem.spec.to_dict(), **{k: hyper[k] for k in FIT_KEYS}}, sort_keys=True)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "little") >> 1


def search_grid(t0: float, profile: Any) -> list[float]:
    """The log-λ grid: 9 points on [t0 − 4, t0 + 4], extended outward while the minimum sits at an edge.

    Each extension adds ``HALF_WIDTH`` more unit-spaced points beyond that edge, at most ``MAX_EXTEND`` times
    per side, so the search never leaves [t0 − HALF_WIDTH·(1 + MAX_EXTEND), t0 + HALF_WIDTH·(1 + MAX_EXTEND)]
    (λ0·e^{±20}).  The extended grid is kept only if it beats the original one by more than ``EXTEND_GAIN``
    (1%): a nearly flat profile is not chased to huge λ, where the fitted weights grow like λ² and roundoff
    grows with them (RELAX on a categorical example gained 0.2% at λ = 4.5e5 with η = 5e8).  Without it the optimum of the Bernoulli toy (D = 1) sat at the old edge λ0·e⁴ ≈ 27.3.
    """
    grid0 = [float(t) for t in np.linspace(t0 - HALF_WIDTH, t0 + HALF_WIDTH, GRID)]
    grid = list(grid0)
    step = grid[1] - grid[0]
    n_new = int(round(HALF_WIDTH / step))
    for _ in range(2 * MAX_EXTEND):  # both sides together
        vals = [profile(t) for t in grid]
        i = int(np.argmin(vals))
        if i == 0 and grid[0] > t0 - HALF_WIDTH * (1 + MAX_EXTEND) + step / 2:
            grid = [grid[0] - step * k for k in range(n_new, 0, -1)] + grid
        elif i == len(grid) - 1 and grid[-1] < t0 + HALF_WIDTH * (1 + MAX_EXTEND) - step / 2:
            grid = grid + [grid[-1] + step * k for k in range(1, n_new + 1)]
        else:
            break
    base = min(profile(t) for t in grid0)
    return grid if min(profile(t) for t in grid) < (1 - EXTEND_GAIN) * base else grid0


def fit(problem: Any, hyper: dict[str, Any], relax: bool) -> Fit:
    """The fitted (λ, β) for ``problem`` (cached; see the module docstring for the procedure)."""
    h = {k: hyper.get(k, HYPERS[k].default) for k in FIT_KEYS}
    target = problem.spec.to_dict()
    got = FITS[relax].get(target, h)
    if got is not None:
        return got
    t0 = time.perf_counter()
    seed = _fit_seed(problem, h)
    fctx = Context.for_problem(problem, "numpy")  # the fit's own evaluations, outside the measured call
    cat = problem.dist.name == "categorical"
    N = fit_batch_size(problem, int(h["fit_samples"]))
    nz = draw(fctx.B.noise(seed, "float64", "cpu"), 1, N, problem.event_shape, cat)
    th = problem.params_np["logits"][None, None]
    cache: dict[float, tuple[float, np.ndarray, float]] = {}

    def profile(t: float) -> float:
        if t not in cache:
            cache[t] = _profile(fctx, th, nz, math.exp(t), relax)
        return cache[t][0]

    t_best = math.log(float(h["temperature"]))
    if h["fit_temperature"]:
        grid = search_grid(t_best, profile)
        i = int(np.argmin([profile(float(t)) for t in grid]))
        lo, hi = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
        g = (math.sqrt(5) - 1) / 2
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
        for _ in range(int(h["fit_steps"])):
            if profile(c) <= profile(d):
                hi, d = d, c
                c = hi - g * (hi - lo)
            else:
                lo, c = c, d
                d = lo + g * (hi - lo)
        t_best = min((t for t in cache if grid[0] <= t <= grid[-1]), key=lambda t: cache[t][0])
    var, beta, base = cache[t_best] if t_best in cache else _profile(fctx, th, nz, math.exp(t_best), relax)
    beta_t = tuple(float(x) for x in beta)
    out = Fit(math.exp(t_best), beta_t, var, base, time.perf_counter() - t0, len(cache), seed, N)
    FITS[relax].put(target, h, out)
    _LOG.append({"estimator": "relax" if relax else "rebar", "problem": problem.label(), **h, **out.__dict__})
    return out


def fit_log() -> list[dict[str, Any]]:
    """One record per fit done in this process: problem, hyperparameters, λ, β, variances, seconds."""
    return list(_LOG)


# -- estimators ---------------------------------------------------------------------------------------
def _numpy(ctx: Any, relax: bool) -> dict[str, np.ndarray]:
    ft = fit(ctx.problem, ctx.hyper, relax)
    cat = ctx.dist.name == "categorical"
    nz = draw(ctx.noise, ctx.R, ctx.L, ctx.event_shape, cat)
    a, C = np_terms(ctx, ctx.batched()["logits"][:, None], nz, ft.lam, relax)
    beta = np.asarray(ft.beta).reshape((-1,) + (1,) * (C.ndim - 1))
    return {"logits": (a - (beta * C).sum(0)).mean(1)}


def fitted_constants(relax: bool) -> Any:
    """The declared ``constants`` hook: the fitted temperature λ and weights β of ``ctx``'s target (host side)."""

    def constants(ctx: Any) -> dict[str, Any]:
        ft = fit(ctx.problem, ctx.hyper, relax)
        return {"lam": ft.lam, "beta": ft.beta}

    return constants


def _autodiff(ctx: Any, relax: bool) -> dict[str, Any]:
    B = ctx.B
    ft = ctx.fitted or fitted_constants(relax)(ctx)  # backend arrays from the runner (JAX: compiled-call arguments)
    # or, called directly, Python floats
    lam, beta = ft["lam"], ft["beta"]
    cat = ctx.dist.name == "categorical"
    nz = draw(ctx.noise, ctx.R, ctx.L, ctx.event_shape, cat)
    P = ctx.batched()
    b = hard(B, (cat_z if cat else bern_z)(B, P["logits"][:, None], nz), cat)
    fb = ctx.f(b)

    def c(z: Any) -> Any:
        s = relax_s(B, z, lam, cat)
        if relax:  # the surrogate r_ρ at these points
            ctx.count_aux(s)
        phis = features(B, ctx.f(s), s, cat, relax)
        return sum((beta[j] * phi for j, phi in enumerate(phis) if j), beta[0] * phis[0])

    def surrogate(Q: dict) -> Any:
        th = Q["logits"][:, None]
        z = (cat_z if cat else bern_z)(B, th, nz)
        zt = (cat_zt if cat else bern_zt)(B, th, b, nz)
        ct = c(zt)
        return (B.stop_gradient(fb - ct) * ctx.log_prob(b, Q) + c(z) - ct).mean(1)

    return ctx.grad(surrogate, P)


def rebar_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """REBAR, chain rule written out (NumPy); c(z) = η f(s_λ(z)) fitted beforehand."""
    return _numpy(ctx, relax=False)


def rebar_autodiff(ctx: Any) -> dict[str, Any]:
    """REBAR by autodiff of sg[f(b) − c(z̃)] log p(b) + c(z) − c(z̃)."""
    return _autodiff(ctx, relax=False)


def relax_numpy(ctx: Any) -> dict[str, np.ndarray]:
    """RELAX with the parametric surrogate, chain rule written out (NumPy)."""
    return _numpy(ctx, relax=True)


def relax_autodiff(ctx: Any) -> dict[str, Any]:
    """RELAX by autodiff of sg[f(b) − c(z̃)] log p(b) + c(z) − c(z̃)."""
    return _autodiff(ctx, relax=True)


def _register() -> None:
    base = dict(
        distributions=DISCRETE, unbiased=True, hyperparameters=HYPERS, requires=("differentiable",), family="rebar"
    )
    for name, ref, np_fn, ad_fn in (
        ("rebar", REF_REBAR, rebar_numpy, rebar_autodiff),
        ("relax", REF_RELAX, relax_numpy, relax_autodiff),
    ):
        relax = name == "relax"
        est = register_estimator(
            name, reference=ref, state=FITS[relax].declaration(), constants=fitted_constants(relax), **base
        )
        est.implementation("numpy")(np_fn)
        est.implementation(*AUTODIFF)(ad_fn)


_register()
