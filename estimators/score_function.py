r"""Score-function (REINFORCE / likelihood-ratio) gradients, their baselines and control variates.

.. math::
    \nabla_\theta \mathbb{E}[f(z)] = \mathbb{E}[(f(z) - b)\, \nabla_\theta \log p(z;\theta)]

``score_function``: b = 0.  ``score_function_rloo``: leave-one-out baseline
:math:`b_l = \frac{1}{L-1}\sum_{j\ne l} f(z_j)`, i.e. :math:`\frac{1}{L-1}\sum_l (f_l - \bar f)\nabla\log p(z_l)`,
still unbiased, needs L >= 2.  ``score_function_oracle``: b = E[f(z)] exactly (from the problem's ground
truth) -- a reference point that is NOT implementable in practice (it needs the very expectation being
differentiated); it shows what a perfect mean baseline would buy.  Note that b = E[f] is not the
variance-optimal constant (that is :math:`c^*_j` below), so ``score_function_cv`` can beat the oracle.

``score_function_cv`` (score as control variate, :math:`\mathbb{E}[\nabla\log p] = 0`), per coordinate j:

.. math::
    \hat g_j = \frac1L \sum_{l=1}^L \bigl(f(z_l) - \hat c_j\bigr) s_j(z_l),\qquad
    \hat c_j = \frac{\sum_{m=1}^{M} f(z'_m)\, s_j(z'_m)^2}{\sum_{m=1}^{M} s_j(z'_m)^2}

with :math:`s = \nabla_\theta\log p`.  :math:`\hat c_j` estimates the variance-optimal
:math:`c^*_j = \mathrm{Cov}(f s_j, s_j)/\mathrm{Var}(s_j) = \mathbb{E}[f s_j^2]/\mathbb{E}[s_j^2]` (the known
mean :math:`\mathbb{E}[s_j] = 0` is used) from an INDEPENDENT batch :math:`z'_{1..M}` (M = ``n_cv``, 0 means
L), so :math:`\hat c` is independent of the :math:`z_l` and the estimator stays unbiased.  Cost: L + M
samples, L + M evaluations of f and per-sample scores of the M extra samples (2L at the default).

``score_function_delta`` (delta-method control variate, Mohamed et al. 2020 §7.4; the
``control_delta_method`` of DeepMind's mc_gradients / optax): a Taylor expansion of the separable
f = Σ_d g(z_d) around the mean μ = E[z] (order 2 by default, ``order = 1`` drops the g'' term), with the
expansion point held FIXED (stop-gradient):

.. math::
    h(z) = \sum_d g(\mu_d) + g'(\mu_d)(z_d-\mu_d) + \tfrac12 g''(\mu_d)(z_d-\mu_d)^2,\qquad
    \hat g = \frac1L\sum_l \bigl(f(z_l) - \beta h(z_l)\bigr)\nabla_\theta\log p(z_l)
            + \beta \sum_d \bigl[g'(\mu_d)\nabla_\theta \mu_d + \tfrac12 g''(\mu_d)\nabla_\theta v_d\bigr]

with v = Var[z].  The last term is ∇θ E[h] with h held fixed, which is what E[h ∇log p] equals, so the
estimator is unbiased for every β.  (Differentiating E[h] through the expansion point as well adds
β·½ g'''(μ) v ∇θμ, a bias whenever g''' ≠ 0 (e.g. cos); optax's ``control_variates_jacobians`` does
that and removes it again with a Monte Carlo estimate of E[∇θ h]; holding μ fixed makes that term zero,
so no extra noise enters.)
Needs a differentiable, separable f (``ctx.f_grad`` and ``ctx.f_hess_diag`` at μ: the objective's analytic
derivatives on NumPy, nested autodiff on PyTorch/JAX) and the distribution's per-site mean/variance and their θ-derivatives, tabulated in
:data:`MOMENTS` (normal, gamma, exponential, beta, bernoulli).  Cost: L samples, L evaluations of f plus
g, g', g'' at μ.

Requires only that f can be evaluated and log p differentiated in θ; applies to every distribution.
References: Williams (1992); Kool, van Hoof & Welling (2019); Mohamed et al. (2020) JMLR 21(132) §7.

NumPy uses each distribution's analytic score ``dist.score_np``; PyTorch and JAX differentiate the
surrogate mean_L(stopgrad(w_l) log p(z_l; θ)) with autodiff (and, for c*, per-sample scores by autodiff
of log p with one parameter copy per sample).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from estimators._common import AUTODIFF, bcast
from stochgrad import Hyper, register_estimator

ALL = ("*",)
REF_SF = "Williams 1992 (Machine Learning 8:229-256); Mohamed et al. 2020 JMLR 21(132) sec. 4"
REF_RLOO = "Kool, van Hoof & Welling 2019 (ICLR workshop DeepRLStructPred); Salimans & Knowles 2014"
REF_CV = "Mohamed et al. 2020 JMLR 21(132) sec. 7.4 (control variates, optimal coefficient)"
REF_ORACLE = "Mohamed et al. 2020 JMLR 21(132) sec. 7.4 (baselines); oracle b = E[f], not implementable"
N_CV = Hyper(0, low=0, high=10**7, doc="size M of the independent batch that estimates c*; 0 means M = L")


def weights_plain(ctx: Any, fz: Any) -> Any:
    return fz


def weights_rloo(ctx: Any, fz: Any) -> Any:
    L = fz.shape[1]
    return (fz - fz.mean(1, keepdims=True)) * (L / (L - 1))


def weights_oracle(ctx: Any, fz: Any) -> Any:
    return fz - ctx.exact_value()


def score_numpy(ctx: Any, weights: Callable[[Any, Any], Any]) -> dict[str, np.ndarray]:
    P = ctx.batched()
    z = ctx.sample(P)
    w = weights(ctx, ctx.f(z))
    scores = ctx.dist.score_np(z, ctx.dist.align(P))
    return {k: (bcast(w, s) * s).mean(1) for k, s in scores.items()}


def score_autodiff(ctx: Any, weights: Callable[[Any, Any], Any]) -> dict[str, Any]:
    P = ctx.batched()
    z = ctx.sample(P)
    w = ctx.B.stop_gradient(weights(ctx, ctx.f(z)))
    return ctx.grad(lambda Q: (w * ctx.log_prob(z, Q)).mean(1), P)


def _register(name: str, weights: Callable, reference: str, min_samples: int = 1, oracle: bool = False) -> None:
    caps = dict(
        distributions=ALL,
        unbiased=True,
        reference=reference,
        min_samples=min_samples,
        family="score_function",
        oracle=oracle,
    )

    def numpy_impl(ctx: Any) -> dict[str, np.ndarray]:
        return score_numpy(ctx, weights)

    def autodiff_impl(ctx: Any) -> dict[str, Any]:
        return score_autodiff(ctx, weights)

    numpy_impl.__doc__ = autodiff_impl.__doc__ = f"{name}: weights {weights.__name__} (see module docstring)"
    numpy_impl.__qualname__ = f"{name}_numpy"
    autodiff_impl.__qualname__ = f"{name}_autodiff"
    est = register_estimator(name, **caps)
    est.implementation("numpy")(numpy_impl)
    est.implementation(*AUTODIFF)(autodiff_impl)


_register("score_function", weights_plain, REF_SF)
_register("score_function_rloo", weights_rloo, REF_RLOO, min_samples=2)
_register("score_function_oracle", weights_oracle, REF_ORACLE, oracle=True)


# -- score as control variate, coefficient from an independent batch ----------------------------------
def per_sample_scores(ctx: Any, z: Any) -> dict[str, Any]:
    """∇θ log p(z_l; θ) for every sample separately: {param: [R, L, *param_shape]}, no gradient attached.

    NumPy: the analytic ``dist.score_np``.  PyTorch/JAX: autodiff of log p with one parameter copy per
    sample (the R·L copies are the "replicates" of ``ctx.grad``), so no per-distribution code is needed.
    """
    R, L = int(z.shape[0]), int(z.shape[1])
    if not ctx.B.autodiff:
        P = ctx.batched()
        s = ctx.dist.score_np(z, ctx.dist.align(P))
        return {k: np.broadcast_to(v, (R, L, *P[k].shape[1:])) for k, v in s.items()}
    Q = ctx.B.expand_params(ctx.params, R * L)
    zf = z.reshape(R * L, 1, *z.shape[2:])
    g = ctx.grad(lambda Qs: ctx.log_prob(zf, Qs)[:, 0], Q)
    return {k: ctx.B.stop_gradient(v).reshape(R, L, *v.shape[1:]) for k, v in g.items()}


def cv_coefficients(ctx: Any) -> dict[str, Any]:
    r""":math:`\hat c_j = \sum_m f(z'_m) s_j(z'_m)^2 / \sum_m s_j(z'_m)^2` from M fresh samples: {param: [R, *shape]}."""
    M = int(ctx.hyper.get("n_cv", 0)) or ctx.L
    zc = ctx.sample(L=M)
    fc = ctx.B.stop_gradient(ctx.f(zc))
    out = {}
    for k, s in per_sample_scores(ctx, zc).items():
        s2 = s * s
        num, den = (bcast(fc, s2) * s2).sum(1), s2.sum(1)
        out[k] = ctx.B.where(den > 0, num / ctx.B.where(den > 0, den, den + 1), 0 * den)
    return out


def score_cv_numpy(ctx: Any) -> dict[str, np.ndarray]:
    r""":math:`\frac1L\sum_l (f(z_l) - \hat c_j)\, s_j(z_l)` with the analytic score; ĉ from an independent batch."""
    P = ctx.batched()
    z = ctx.sample(P)
    fz = ctx.f(z)
    c = cv_coefficients(ctx)
    scores = ctx.dist.score_np(z, ctx.dist.align(P))
    return {k: ((bcast(fz, s) - c[k][:, None]) * s).mean(1) for k, s in scores.items()}


def score_cv_autodiff(ctx: Any) -> dict[str, Any]:
    r"""∇ mean_l sg(f_l) log p(z_l)  −  ĉ ⊙ ∇ mean_l log p(z_l), both by autodiff of a surrogate."""
    B, P = ctx.B, ctx.batched()
    z = ctx.sample(P)
    w = B.stop_gradient(ctx.f(z))
    c = cv_coefficients(ctx)
    gf = ctx.grad(lambda Q: (w * ctx.log_prob(z, Q)).mean(1), P)
    gs = ctx.grad(lambda Q: ctx.log_prob(z, Q).mean(1), P)
    return {k: gf[k] - c[k] * gs[k] for k in gf}


def _register_cv() -> None:
    caps = dict(
        distributions=ALL, unbiased=True, reference=REF_CV, hyperparameters={"n_cv": N_CV}, family="score_function"
    )
    est = register_estimator("score_function_cv", **caps)
    est.implementation("numpy")(score_cv_numpy)
    est.implementation(*AUTODIFF)(score_cv_autodiff)


_register_cv()

# -- delta-method (Taylor) control variate ------------------------------------------------------------
REF_DELTA = "Mohamed et al. 2020 JMLR 21(132) sec. 7.4 (delta method); Paisley, Blei & Jordan 2012 (ICML)"
DELTA_HYPER = {
    "order": Hyper(2, choices=(1, 2), doc="order of the Taylor expansion of f around the mean"),
    "beta": Hyper(1.0, low=0.0, high=2.0, doc="control-variate coefficient (1: use the full control variate)"),
}


def _normal(B: Any, P: dict) -> tuple[Any, Any]:
    return P["loc"], P["scale"] ** 2


def _d_normal(P: dict) -> tuple[dict, dict]:
    mu, s = P["loc"], P["scale"]
    return {"loc": np.ones_like(mu), "scale": 0 * s}, {"loc": 0 * mu, "scale": 2 * s}


def _gamma(B: Any, P: dict) -> tuple[Any, Any]:
    a, b = P["concentration"], P["rate"]
    return a / b, a / b**2


def _d_gamma(P: dict) -> tuple[dict, dict]:
    a, b = P["concentration"], P["rate"]
    return {"concentration": 1 / b, "rate": -a / b**2}, {"concentration": 1 / b**2, "rate": -2 * a / b**3}


def _exponential(B: Any, P: dict) -> tuple[Any, Any]:
    return 1 / P["rate"], 1 / P["rate"] ** 2


def _d_exponential(P: dict) -> tuple[dict, dict]:
    lam = P["rate"]
    return {"rate": -1 / lam**2}, {"rate": -2 / lam**3}


def _beta(B: Any, P: dict) -> tuple[Any, Any]:
    a, b = P["concentration1"], P["concentration0"]
    s = a + b
    return a / s, a * b / (s**2 * (s + 1))


def _d_beta(P: dict) -> tuple[dict, dict]:
    a, b = P["concentration1"], P["concentration0"]
    s = a + b
    common = a * b * (3 * s + 2) / (s**3 * (s + 1) ** 2)  # -∂v/∂s at fixed a·b
    return (
        {"concentration1": b / s**2, "concentration0": -a / s**2},
        {"concentration1": b / (s**2 * (s + 1)) - common, "concentration0": a / (s**2 * (s + 1)) - common},
    )


def _bernoulli(B: Any, P: dict) -> tuple[Any, Any]:
    p = B.sigmoid(P["logits"])
    return p, p * (1 - p)


def _d_bernoulli(P: dict) -> tuple[dict, dict]:
    p = 1 / (1 + np.exp(-P["logits"]))
    return {"logits": p * (1 - p)}, {"logits": p * (1 - p) * (1 - 2 * p)}


# distribution -> (mean/variance per site on any backend, NumPy ∂θ of mean and variance per site)
MOMENTS: dict[str, tuple[Callable, Callable]] = {
    "normal": (_normal, _d_normal),
    "gamma": (_gamma, _d_gamma),
    "exponential": (_exponential, _d_exponential),
    "beta": (_beta, _d_beta),
    "bernoulli": (_bernoulli, _d_bernoulli),
}


def taylor_terms(ctx: Any, mu: Any, order: int) -> tuple[Any, Any, Any]:
    """g(μ), g'(μ), g''(μ) per site [R, D] at μ [R, D] (held fixed): ``ctx.f_site``, ``ctx.f_grad`` and
    ``ctx.f_hess_diag`` at the one point μ per replicate (analytic on NumPy, nested autodiff on PyTorch/JAX)."""
    m = ctx.B.stop_gradient(mu)[:, None]  # one "sample" per replicate: [R, 1, D]
    g0, g1 = ctx.f_site(m)[:, 0], ctx.f_grad(m)[:, 0]
    g2 = ctx.f_hess_diag(m)[:, 0] if order == 2 else 0 * m[:, 0]
    return ctx.B.stop_gradient(g0), g1, g2


def _taylor(ctx: Any, z: Any, mu: Any, g: tuple[Any, Any, Any]) -> Any:
    """h(z) [R, L] for samples z [R, L, D] and expansion point μ [R, D]."""
    g0, g1, g2 = g
    d = z - mu[:, None]
    return (g0[:, None] + g1[:, None] * d + 0.5 * g2[:, None] * d * d).sum(-1)


def score_delta_numpy(ctx: Any) -> dict[str, np.ndarray]:
    r"""mean_l (f − βh) ∇log p  +  β Σ_d [g'(μ_d) ∂θμ_d + ½ g''(μ_d) ∂θv_d], all analytic."""
    order, beta = int(ctx.hyper.get("order", 2)), float(ctx.hyper.get("beta", 1.0))
    moments, dmoments = MOMENTS[ctx.dist.name]
    P = ctx.batched()
    z = ctx.sample(P)
    mu, _ = moments(ctx.B, P)
    g0, g1, g2 = taylor_terms(ctx, mu, order)
    w = ctx.f(z) - beta * _taylor(ctx, z, mu, (g0, g1, g2))
    dmu, dvar = dmoments(P)
    scores = ctx.dist.score_np(z, ctx.dist.align(P))
    return {k: (bcast(w, s) * s).mean(1) + beta * (g1 * dmu[k] + 0.5 * g2 * dvar[k]) for k, s in scores.items()}


def score_delta_autodiff(ctx: Any) -> dict[str, Any]:
    r"""∇ [ mean_l sg(f − βh) log p  +  β E[h](θ) ] with E[h] = Σ g(μ₀) + g'(μ₀)(μ−μ₀) + ½g''(μ₀)(v + (μ−μ₀)²)."""
    order, beta = int(ctx.hyper.get("order", 2)), float(ctx.hyper.get("beta", 1.0))
    moments = MOMENTS[ctx.dist.name][0]
    B, P = ctx.B, ctx.batched()
    z = ctx.sample(P)
    mu0 = B.stop_gradient(moments(B, P)[0])
    g0, g1, g2 = taylor_terms(ctx, mu0, order)
    w = B.stop_gradient(ctx.f(z) - beta * _taylor(ctx, z, mu0, (g0, g1, g2)))

    def surrogate(Q: dict) -> Any:
        mu, var = moments(B, Q)
        eh = (g0 + g1 * (mu - mu0) + 0.5 * g2 * (var + (mu - mu0) ** 2)).sum(-1)
        return (w * ctx.log_prob(z, Q)).mean(1) + beta * eh

    return ctx.grad(surrogate, P)


def _register_delta() -> None:
    caps = dict(
        distributions=tuple(MOMENTS),
        unbiased=True,
        reference=REF_DELTA,
        hyperparameters=DELTA_HYPER,
        requires=("differentiable", "separable"),
        family="score_function",
    )
    est = register_estimator("score_function_delta", **caps)
    est.implementation("numpy")(score_delta_numpy)
    est.implementation(*AUTODIFF)(score_delta_autodiff)


_register_delta()
