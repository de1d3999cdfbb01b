r"""REINFORCE leave-one-out with control variates from a Taylor surrogate of f: double CV and RODEO.

Both estimators draw K = L i.i.d. samples :math:`x_1..x_K \sim q_\theta` (a product of D Bernoulli(σ(θ_d)) or
Categorical(softmax(θ_d)) sites, one-hot :math:`x \in \{0,1\}^{D\times C}`), evaluate :math:`f_k = f(x_k)` and
the derivative :math:`G_k = \partial f/\partial x\,(x_k)` at the same points (f must be differentiable in x on
the vertices), and build, for every sample, a surrogate of f from the *other* K − 1 samples only, so that every
control variate has mean zero conditionally on the sample it multiplies.  With the score
:math:`s(x) = \nabla_\theta \log q(x) = x - p` (p = σ(θ) or softmax(θ)), the leave-one-out means
:math:`\bar G_{-k} = \frac{1}{K-1}\sum_{j\ne k} G_j`, and :math:`\mathrm{LOO}_k[a] = \frac1{K-1}\sum_{j\ne k} a_j`:

``double_cv`` — double control variates (Titsias & Shi 2022).  A global control variate (the leave-one-out
baseline, itself corrected) and a local one, the first-order Taylor term around the mean μ = E[x] = p (held
fixed) with the slope taken from the other samples, :math:`c_k(x) = \bar G_{-k}\cdot(x - \mu)`:

.. math::
    \hat g = \frac1K \sum_k \Big[\big(f_k - \alpha\, c_k(x_k) - b_k\big)\, s(x_k)
             + \alpha\, \mathrm{Cov}_q[x]\,\bar G_{-k}\Big],\qquad b_k = \mathrm{LOO}_k\big[f_j - \alpha\, c_j(x_j)\big]

(:math:`\mathrm{Cov}_q[x]\,v` per site: :math:`p(1-p)v` for Bernoulli, :math:`p \odot (v - p\cdot v)` for
categorical, i.e. :math:`\nabla_\theta \mathbb E_q[c_k]`).  α = 1 is the Taylor coefficient (for a linear f
the estimator is then exact, zero variance); α = 0 is RLOO.  The paper learns α online (a scalar trained to
minimize the estimator's variance, initialized at 0 in the reference code); here it is fitted once per problem to
minimize the variance (``coefficients = "fitted"``, the default; see :mod:`estimators._coefficient_fit`) or given
(``coefficients = "fixed"`` with ``alpha``).

``rodeo`` — RLOO with discrete Stein operators (Shi, Zhou, Hwang, Titsias & Mackey 2022).  A Stein operator
:math:`(\mathcal A h)(x) = \sum_{(i,v)\in N(x)} \kappa_i(x, v)\,[h(x^{i\leftarrow v}) - h(x)]`, with N(x) the
neighbours that change one site i to another value v and κ the kernel of a q-reversible Markov chain, has
:math:`\mathbb E_q[\mathcal A h] = 0` for every h.  Kernels (hyperparameter ``kernel``): ``gibbs``
:math:`\kappa = q_i(v)`, ``barker`` :math:`\kappa = q_i(v)/(q_i(v)+q_i(x_i))` (equal to gibbs for Bernoulli),
``mpf`` :math:`\kappa = \sqrt{q_i(v)/q_i(x_i)}` (minimum probability flow).  With the linear surrogate
:math:`\ell_k(y) = \bar G_{-k}\cdot(y - \mu)` (``center = "mean"``, default: f's first-order expansion at
μ = E[x] = p with the other samples' slopes, as in double CV) or
:math:`\ell_k(y) = \frac1{K-1}\sum_{j\ne k} G_j\cdot(y - x_j)` (``center = "samples"``: each other sample's own
expansion, the reference code's input), both without f's value, a constant that :math:`\mathcal A` removes from h
but not from H:

.. math::
    \hat g = \frac1K \sum_k \Big[\big(f_k - b_k\big)\, s(x_k) + \beta\, (\mathcal A H_k)(x_k)\Big],\qquad
    b_k = \mathrm{LOO}_k\big[f_j + \alpha\, (\mathcal A \ell_j)(x_j)\big],\qquad H_k(y) = \ell_k(y)\, s(y).

:math:`\mathcal A \ell` and :math:`\mathcal A H` are exact sums over the D(C − 1) neighbours of the surrogate
(never of f): no evaluation of f beyond the K samples.  With ``gibbs`` and a linear f,
:math:`(\mathcal A \ell_j)(x) = \mathbb E_q[f] - f(x)` and, at α = 1, the baseline is exactly E[f].  α = β = 0 is
RLOO.  α, β are fitted once per problem to minimize the variance (default) or given (``coefficients = "fixed"``).

What differs from the paper (precisely):

* the paper passes the surrogate through a learned network (``control_nn``: inputs the linear term ℓ expanded at
  the other samples and the leave-one-out mean of f, two outputs, the first for h, the second multiplying the
  score in H) and learns it and α, β online by gradient steps on the estimator's variance; here the network is
  the identity on its linear input (h = ℓ, H = ℓ·s) and α, β are the variance-minimizing constants for the problem
  at hand, fitted on an independent batch (the value online learning tends to at a fixed θ, without its lag), or
  given;
* without the network, the expansion point matters for H: expanded at the other samples, ℓ_k(μ) is a zero-mean
  random offset and H = ℓ·s carries it as a noisy baseline (measured: 1.8–6.5× the variance of
  ``center = "mean"`` on the textbook problems of docs/notes/discrete.md), so the default expands at μ (the
  reference code's ``mu`` variant does too, with ∇f(μ), an extra evaluation; here the slopes stay the other
  samples', so no evaluation is added);
* the reference code averages the Gibbs operator over the D sites (a random-scan chain, κ/D) and sums the MPF
  operator; here every kernel is summed over sites (the scale is absorbed by α, β in the paper, which learns them);
  its MPF weight adds 1e-3 to a denominator, here the ratio is exact;
* the paper's K = 2 form (``discrete_stein_avg``: each sample's surrogate is the other sample's expansion) and
  K > 2 form (``discrete_stein_output_avg``: the network applied to each other sample's expansion, outputs
  averaged) coincide when the network is the identity, so one formula serves every K >= 2 (the reference code's
  input-averaged form for K > 2 also omits a 1/(K − 1) on its constant term, which the output-averaged form does not).

Cost (both): L = K samples; per L-sample estimate K evaluations of f and K of ∂f/∂x, at the same K points
(PyTorch/JAX: one forward and one backward pass of f over the K points); the one-off fit adds N·K of each
(N = ``fit_samples``, recorded by :func:`estimators._coefficient_fit.fit_log`), not per estimate.  Needs K >= 2.  Unbiased for every α, β
and kernel.  One backend-generic formula with analytic scores serves NumPy, PyTorch and JAX (only ∂f/∂x differs:
the analytic ``ctx.f_grad`` on NumPy, autodiff elsewhere), so all three agree on identical noise.
"""

from __future__ import annotations

from typing import Any

import stochgrad as sg
from estimators._coefficient_fit import FIT_HYPER, coefficients, declaration
from estimators._common import bcast, f_and_grad, loo_mean

DISCRETE = ("bernoulli", "categorical")
BACKENDS = ("numpy", "torch", "jax")
REF_DCV = (
    "Titsias & Shi 2022 (AISTATS, arXiv:2111.05300), double control variates for gradient estimation in discrete "
    "latent variable models"
)
REF_RODEO = (
    "Shi, Zhou, Hwang, Titsias & Mackey 2022 (NeurIPS, arXiv:2202.09497), gradient estimation with discrete Stein "
    "operators (RODEO)"
)
KERNELS = ("gibbs", "barker", "mpf")
ALPHA = sg.Hyper(
    1.0, low=-10.0, high=10.0, doc="with coefficients = fixed: weight of the baseline's control variate (0: RLOO)"
)
DCV_HYPER = {**FIT_HYPER, "alpha": ALPHA}
RODEO_HYPER = {
    "kernel": sg.Hyper("gibbs", choices=KERNELS, doc="Stein operator's Markov kernel: gibbs, barker or mpf"),
    "center": sg.Hyper(
        "mean", choices=("mean", "samples"), doc="expansion point of the surrogate: E[x], or the other samples"
    ),
    **FIT_HYPER,
    "alpha": ALPHA,
    "beta": sg.Hyper(
        1.0, low=-10.0, high=10.0, doc="with coefficients = fixed: weight of the gradient control variate (A H)(x)"
    ),
}
Grad = dict[str, Any]


def draws(ctx: Any, P: dict[str, Any]) -> dict[str, Any]:
    """K samples with f, ∂f/∂x, probabilities p [R, 1, *event] and scores s = x − p (everything detached)."""
    B = ctx.B
    cat = ctx.dist.name == "categorical"
    th = P["logits"][:, None]  # [R, 1, *event]
    x = ctx.sample(P)  # [R, K, *event]
    fx, G = f_and_grad(ctx, x)
    p = B.softmax(th, -1) if cat else B.sigmoid(th)
    return {"cat": cat, "th": th, "x": x, "f": fx, "G": G, "p": p, "s": x - p}


def event_sum(a: Any, cat: bool) -> Any:
    """Sum over the event axes: [R, K, D(, C)] -> [R, K]."""
    return a.sum(-1).sum(-1) if cat else a.sum(-1)


def cov_times(p: Any, v: Any, cat: bool) -> Any:
    """Cov_q[x] v per site: p(1 − p) v (Bernoulli), p ⊙ (v − p·v) (categorical)."""
    return p * (v - (p * v).sum(-1, keepdims=True)) if cat else p * (1 - p) * v


def score_mean(w: Any, s: Any) -> Any:
    """mean_k w_k s(x_k): [R, K] weights, [R, K, *event] scores -> [R, *event]."""
    return (bcast(w, s) * s).mean(1)


def dcv_terms(ctx: Any, P: dict[str, Any]) -> tuple[Grad, list[Grad]]:
    """(RLOO, [C]) with double CV = RLOO − α C, C = mean_k (c_k − LOO[c]_k) s(x_k) − Cov[x] mean_k G_k."""
    d = draws(ctx, P)
    cat, x, s, p = d["cat"], d["x"], d["s"], d["p"]
    c = event_sum(loo_mean(d["G"]) * (x - p), cat)  # c_k(x_k) = Ḡ_{-k}·(x_k − μ)  [R, K]
    rloo = score_mean(d["f"] - loo_mean(d["f"]), s)
    C = score_mean(c - loo_mean(c), s) - cov_times(p[:, 0], d["G"].mean(1), cat)  # mean_k Cov Ḡ_{-k} = Cov mean G
    return {"logits": rloo}, [{"logits": C}]


def kernel_weights(B: Any, d: dict[str, Any], kernel: str) -> Any:
    """κ for every neighbour: Bernoulli [R, K, D] (the flip of each site); categorical [R, K, D, C], 0 at v = x_i."""
    x, th = d["x"], d["th"]
    if d["cat"]:
        lq = B.log_softmax(th, -1)  # log q_i(v)
        lqx = (x * lq).sum(-1, keepdims=True)  # log q_i(x_i)
        off = 1 - x
    else:
        lq = B.where(x > 0.5, B.log_sigmoid(-th), B.log_sigmoid(th))  # log q_i(flipped value)
        lqx = B.where(x > 0.5, B.log_sigmoid(th), B.log_sigmoid(-th))  # log q_i(x_i)
        off = 1
    if kernel == "gibbs":
        k = B.exp(lq)
    elif kernel == "barker":
        k = B.sigmoid(lq - lqx)
    else:  # mpf
        k = B.exp(0.5 * (lq - lqx))
    return k * off


def rodeo_terms(ctx: Any, P: dict[str, Any]) -> tuple[Grad, list[Grad]]:
    """(RLOO, [C_α, C_β]) with RODEO = RLOO − α C_α − β C_β:
    C_α = mean_k LOO[(A ℓ_j)(x_j)]_k s(x_k), C_β = −mean_k (A H_k)(x_k)."""
    B, d = ctx.B, draws(ctx, P)
    cat, x, s, G = d["cat"], d["x"], d["s"], d["G"]
    Gm = loo_mean(G)  # slope of ℓ_k
    # ℓ_k(x_k) and the change Δ of ℓ_k from x_k to each neighbour x_k^{i<-v}
    at = event_sum(Gm * d["p"], cat) if ctx.hyper["center"] == "mean" else loo_mean(event_sum(G * x, cat))
    lx = event_sum(Gm * x, cat) - at  # [R, K]
    delta = Gm - (Gm * x).sum(-1, keepdims=True) if cat else Gm * (1 - 2 * x)
    kap = kernel_weights(B, d, str(ctx.hyper["kernel"]))
    a = event_sum(kap * delta, cat)  # (A ℓ_k)(x_k) [R, K]
    # (A H_k)(x) = s(x) Σ κΔ + Σ_(i,v) κ ℓ_k(x^{i<-v}) (s(x^{i<-v}) − s(x)), the last factor nonzero in row i only
    W = kap * (bcast(lx, delta) + delta)
    row = W - x * W.sum(-1, keepdims=True) if cat else W * (1 - 2 * x)
    AH = bcast(a, s) * s + row
    rloo = score_mean(d["f"] - loo_mean(d["f"]), s)
    return {"logits": rloo}, [{"logits": score_mean(loo_mean(a), s)}, {"logits": -AH.mean(1)}]


def combine(g0: Grad, C: list[Grad], coef: tuple[float, ...]) -> Grad:
    """g0 − Σ_j c_j C_j."""
    return {k: g0[k] - sum(c * Cj[k] for c, Cj in zip(coef, C)) for k in g0}


def dcv_constants(ctx: Any) -> dict[str, Any]:
    """The declared ``constants`` hook of double CV: its fitted (or fixed) coefficients on ``ctx``'s target."""
    return {"coefficients": coefficients(ctx, "double_cv", dcv_terms, {"alpha": float(ctx.hyper["alpha"])})}


def rodeo_constants(ctx: Any) -> dict[str, Any]:
    """The declared ``constants`` hook of RODEO: its fitted (or fixed) coefficients on ``ctx``'s target."""
    fixed = {"alpha": float(ctx.hyper["alpha"]), "beta": float(ctx.hyper["beta"])}
    return {"coefficients": coefficients(ctx, "rodeo", rodeo_terms, fixed)}


def unpack(coef: Any) -> tuple[Any, ...]:
    """The coefficients as a tuple of scalars (a backend array from ``ctx.fitted``, or the hook's tuple)."""
    return tuple(coef[j] for j in range(len(coef)))


def double_cv(ctx: Any) -> Grad:
    """Double CV: mean_k (f_k − α c_k(x_k) − b_k) s(x_k) + α Cov[x] Ḡ (see the module docstring)."""
    coef = (ctx.fitted or dcv_constants(ctx))["coefficients"]
    return combine(*dcv_terms(ctx, ctx.batched()), unpack(coef))


def rodeo(ctx: Any) -> Grad:
    """RODEO: mean_k (f_k − b_k) s(x_k) + β (A H_k)(x_k), b_k = LOO[f_j + α (A ℓ_j)(x_j)] (module docstring)."""
    coef = (ctx.fitted or rodeo_constants(ctx))["coefficients"]
    return combine(*rodeo_terms(ctx, ctx.batched()), unpack(coef))


def _register() -> None:
    base = dict(distributions=DISCRETE, unbiased=True, min_samples=2, requires=("differentiable",), family="loo_taylor")
    for name, hyper, fn, ref, constants in (
        ("double_cv", DCV_HYPER, double_cv, REF_DCV, dcv_constants),
        ("rodeo", RODEO_HYPER, rodeo, REF_RODEO, rodeo_constants),
    ):
        est = sg.register_estimator(
            name, reference=ref, hyperparameters=hyper, state=declaration(name), constants=constants, **base
        )
        est.implementation(*BACKENDS)(fn)


_register()
