"""unordered_set (sampling without replacement, leave-one-out ratios, built-in baseline): beyond the battery.

- the set probabilities from the trapezoid rule agree with the sum over all orderings (relative 1e-10), including
  tiny configuration probabilities (log p ≈ −1400) and sets holding almost all the mass;
- stochastic beam search: k distinct configurations, and the unordered set's distribution matches p(S) from the
  sum over orderings (per-set z-tests, Bonferroni, with a power statement), categorical and Bernoulli sites;
- per-sample formula on fixed noise against a hand computation on the same sets (3 backends);
- k equal to the domain size gives the exact gradient in every replicate;
- the set probabilities of a large set (k = 48) against adaptive quadrature;
- unbiasedness with and without the baseline at k = 2, 3, 6, and at k = 48 on a 2^10 domain (Bonferroni t-test
  with a power check); the baseline
  lowers the variance, and the estimator beats RLOO at equal evaluations on a small domain (z > 3).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import stochgrad as sg
from estimators.unordered_set import beam_search, set_integrals, site_log_probs
from tests.support.estimator_calls import BACKENDS, check, context, estimates, get_estimator, run_fixed

CAT = sg.problem("categorical", objective="categorical_target", dim=2, logits=[[0.5, -0.5, 1.0], [0.0, 1.0, -1.0]])
BERN = sg.problem("bernoulli", objective="quadratic", dim=3, logits=[-1.0, 0.3, 2.0], objective_params={"k": 0.2})
CAT5 = sg.problem("categorical", objective="categorical_target", dim=1, logits=[0.5, -0.5, 0.0, 1.0, -1.0])
Z_VAR = 3.0


def z_bonferroni(n: int, alpha: float = 1e-3) -> float:
    """Two-sided critical value of N(0, 1) for n tests at family-wise level alpha."""
    return float(stats.norm.isf(alpha / (2 * n)))


def test_declared_capabilities() -> None:
    for b in BACKENDS:
        spec = get_estimator("unordered_set", b)
        assert spec.unbiased and spec.min_samples == 2 and set(spec.distributions) == {"bernoulli", "categorical"}
        assert spec.hyperparameters["baseline"].default is True and spec.reference and spec.doc


def log_set_prob(logp: np.ndarray, log_total: float) -> float:
    """log P(k draws without replacement from a domain of mass exp(log_total) give the set logp), all orderings."""
    out = -math.inf
    for perm in itertools.permutations(range(len(logp))):
        acc, used = 0.0, -math.inf
        for i in perm:
            acc += logp[i] - (log_total + math.log1p(-math.exp(used - log_total)))
            used = np.logaddexp(used, logp[i])
        out = np.logaddexp(out, acc)
    return float(out)


def by_orderings(logp_S: np.ndarray, log_rest: float) -> tuple[float, np.ndarray, np.ndarray]:
    """(log p(S), log p^{D∖s}(S∖s), log p^{D∖{s,s'}}(S∖{s,s'})) by the sum over orderings."""
    k = len(logp_S)

    def prob(idx: list[int]) -> float:
        sub = logp_S[idx]
        return log_set_prob(sub, float(np.logaddexp(special.logsumexp(sub), log_rest))) if idx else 0.0

    one = np.array([prob([j for j in range(k) if j != s]) for s in range(k)])
    two = np.array(
        [[prob([j for j in range(k) if j not in (s, t)]) if s != t else one[s] for t in range(k)] for s in range(k)]
    )
    return prob(list(range(k))), one, two


CASES = {
    "moderate": (np.log([0.3, 0.2, 0.1, 0.05]), math.log(0.35)),
    "six": (np.log([0.12, 0.1, 0.09, 0.08, 0.05, 0.02]), math.log(0.54)),
    "tiny": (np.array([-1400.0, -1401.5, -1399.2]), 0.0),
    "nearly_all": (np.log([0.5, 0.3, 0.2 - 1e-7]), math.log(1e-7)),
}


@pytest.mark.parametrize("case", CASES)
def test_set_integrals_match_the_sum_over_orderings(case: str) -> None:
    logp_S, log_rest = CASES[case]
    ctx = context(CAT, "numpy", 2, 1, 0)
    full, one, two = set_integrals(ctx, logp_S[None], pairs=True)
    e_full, e_one, e_two = by_orderings(logp_S, log_rest)
    # log-space agreement to 1e-10 is relative agreement of the probabilities to 1e-10
    np.testing.assert_allclose(full[0], e_full, rtol=0, atol=1e-10)
    np.testing.assert_allclose(one[0], e_one, rtol=0, atol=1e-10)
    np.testing.assert_allclose(two[0], e_two, rtol=0, atol=1e-10)


def _quad_log_integral(logp_T: np.ndarray, log_rest: float) -> float:
    """log ∫_0^1 Π_t (1 − u^{a_t}) du by adaptive quadrature in y (u = exp(−e^y)), Π a_t factored out in logs."""
    la = logp_T - log_rest

    def g(y: float) -> float:
        x = np.exp(la + y)
        ratio = np.where(x < 1e-8, 1 - x / 2, -np.expm1(-x) / np.maximum(x, 1e-300))  # (1 − e^{−x}) / x
        return math.exp(y - math.exp(y) + len(la) * y + float(np.log(ratio).sum()))

    peak = math.log(len(la) + 1)
    parts = ((-np.inf, peak - 3), (peak - 3, peak + 3), (peak + 3, np.inf))
    val = sum(integrate.quad(g, a, b, epsabs=0, epsrel=1e-13, limit=500)[0] for a, b in parts)
    return math.log(val) + float(la.sum())


def test_set_integrals_for_a_large_set_match_adaptive_quadrature() -> None:
    """k = 48 (where the node spacing must follow k): S, S∖s and S∖{s, s'} against scipy's adaptive quadrature."""
    k = 48
    logp_S = np.log(np.random.default_rng(7).uniform(0.2, 1.0, size=k) * 1e-3)
    log_rest = math.log1p(-np.exp(logp_S).sum())
    ctx = context(CAT, "numpy", 2, 1, 0)
    full, one, two = set_integrals(ctx, logp_S[None], pairs=True)
    np.testing.assert_allclose(full[0], _quad_log_integral(logp_S, log_rest), rtol=0, atol=1e-10)
    for s in (0, 17):
        np.testing.assert_allclose(one[0, s], _quad_log_integral(np.delete(logp_S, s), log_rest), rtol=0, atol=1e-10)
        for t in (5, 40):
            rest = np.delete(logp_S, [s, t])
            np.testing.assert_allclose(two[0, s, t], _quad_log_integral(rest, log_rest), rtol=0, atol=1e-10)


def _configs(problem) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """All configurations (category index per site) and their log-probabilities."""
    ctx = context(problem, "numpy", 2, 1, 0)
    logp, _ = site_log_probs(ctx, ctx.batched()["logits"])
    C = logp.shape[-1]
    configs = list(itertools.product(range(C), repeat=problem.dim))
    return configs, np.array([sum(logp[0, i, c] for i, c in enumerate(cf)) for cf in configs])


@pytest.mark.parametrize(("problem", "k"), [(CAT, 3), (BERN, 3), (CAT, 2)], ids=["cat-k3", "bern-k3", "cat-k2"])
def test_beam_search_draws_sets_with_their_probabilities(problem, k: int) -> None:
    R, seed = 60_000, 90 + k
    ctx = context(problem, "numpy", k, R, seed)
    logp, _ = site_log_probs(ctx, ctx.batched()["logits"])
    x, logp_S = beam_search(ctx, logp, k)
    idx = x.argmax(-1)  # [R, k, D]
    configs, logp_all = _configs(problem)
    pos = {c: i for i, c in enumerate(configs)}
    ids = np.array([[pos[tuple(row)] for row in rep] for rep in idx])  # [R, k]
    assert np.all(np.sort(ids, 1)[:, 1:] != np.sort(ids, 1)[:, :-1]), "a set repeats a configuration"
    np.testing.assert_allclose(logp_S, logp_all[ids], rtol=1e-12, atol=1e-12)
    sets = list(itertools.combinations(range(len(configs)), k))
    p = np.array([math.exp(log_set_prob(logp_all[list(s)], 0.0)) for s in sets])
    assert abs(p.sum() - 1) < 1e-10
    counts = dict.fromkeys(sets, 0)
    for row in np.sort(ids, 1):
        counts[tuple(row)] += 1
    freq = np.array([counts[s] for s in sets]) / R
    se = np.sqrt(p * (1 - p) / R)
    z = z_bonferroni(len(sets) + len(configs))
    worst = np.max(np.abs(freq - p) / se)
    assert worst <= z, f"set frequencies off: max |z| = {worst:.2f} > {z:.2f} (seed={seed})"
    # power: a relative error of 15% in the probability of every set with p >= 0.03 would be detected
    big = p >= 0.03
    assert big.any() and np.all(z * se[big] < 0.15 * p[big]), f"underpowered (seed={seed})"
    first = np.bincount(ids[:, 0], minlength=len(configs)) / R  # the top of a Gumbel-top-k is a draw from p
    assert np.all(np.abs(first - np.exp(logp_all)) <= z * np.sqrt(np.exp(logp_all) / R)), f"seed={seed}"


@pytest.mark.parametrize("problem", [CAT, BERN], ids=["categorical", "bernoulli"])
@pytest.mark.parametrize("baseline", [True, False])
def test_per_sample_formula(problem, baseline: bool) -> None:
    k, R, seed = 3, 6, 95
    ctx = context(problem, "numpy", k, R, seed)
    th = ctx.batched()["logits"]
    logp, cat = site_log_probs(ctx, th)
    x1h, _ = beam_search(ctx, logp, k)  # the estimator draws the same noise first
    x = x1h if cat else x1h[..., 1]
    configs, logp_all = _configs(problem)
    pos = {c: i for i, c in enumerate(configs)}
    p = special.softmax(problem.params_np["logits"], -1) if cat else special.expit(problem.params_np["logits"])
    hand = np.zeros((R, *p.shape))
    for r in range(R):
        ids = [pos[tuple(row)] for row in x1h[r].argmax(-1)]
        lp = logp_all[ids]
        log_rest = math.log1p(-np.exp(lp).sum())
        full, one, two = by_orderings(lp, log_rest)
        f = np.array([((x[r, s] - (problem.op["target"] if cat else problem.op["k"])) ** 2).sum() for s in range(k)])
        for s in range(k):
            b = sum(math.exp(lp[t] + two[s, t] - one[s]) * f[t] for t in range(k)) if baseline else 0.0
            hand[r] += math.exp(lp[s] + one[s] - full) * (f[s] - b) * (x[r, s] - p)
    for be in BACKENDS:
        out = run_fixed("unordered_set", be, problem, k, R, seed, {"baseline": baseline})["logits"]
        np.testing.assert_allclose(out, hand, rtol=1e-9, atol=1e-12, err_msg=f"{be} baseline={baseline} seed={seed}")


@pytest.mark.parametrize("problem", [CAT, BERN, CAT5], ids=["cat", "bern", "cat5"])
def test_whole_domain_gives_the_exact_gradient(problem) -> None:
    n = int(np.prod([problem.params_np["logits"].shape[-1] if problem.dist.name == "categorical" else 2] * problem.dim))
    for L in (n, n + 3):
        out = run_fixed("unordered_set", "numpy", problem, L, 20, 96)["logits"]
        ex = problem.exact.grads["logits"]
        np.testing.assert_allclose(out, np.broadcast_to(ex, out.shape), rtol=1e-10, atol=1e-13, err_msg=f"L={L}")


BIG = sg.problem(
    "bernoulli", objective="quadratic", dim=10, logits=list(np.linspace(-2, 2, 10)), objective_params={"k": 0.2}
)
UNBIASED = [(p, k, bl) for p in (CAT, BERN) for k in (2, 3, 6) for bl in (True, False)] + [(BIG, 48, True)]
N_COORDS = sum(int(np.prod(p.params_np["logits"].shape)) for p, _, _ in UNBIASED)


@pytest.mark.parametrize(
    ("problem", "k", "baseline"), UNBIASED, ids=[f"{p.dist.name}-k{k}-bl{bl}" for p, k, bl in UNBIASED]
)
def test_unbiased(problem, k: int, baseline: bool) -> None:
    seed = 100 + UNBIASED.index((problem, k, baseline))
    res = check("unordered_set", "numpy", problem, L=k, seed=seed, hyper={"baseline": baseline}, n_tests=N_COORDS,
                max_R=400_000)  # fmt: skip
    assert res.verdict == "pass", f"{res.line()} (seed={seed})"


def _var(G: np.ndarray) -> tuple[float, float]:
    G = G.reshape(G.shape[0], -1)
    s = ((G - G.mean(0)) ** 2).mean(1)
    return float(s.mean()), float(s.std(ddof=1) / math.sqrt(len(s)))


def test_baseline_and_sampling_without_replacement_lower_the_variance() -> None:
    L, R, seed = 3, 100_000, 110
    v_bl, se_bl = _var(estimates("unordered_set", "numpy", CAT5, L, R, seed)["logits"])
    v_no, se_no = _var(estimates("unordered_set", "numpy", CAT5, L, R, seed + 1, {"baseline": False})["logits"])
    v_rl, se_rl = _var(estimates("score_function_rloo", "numpy", CAT5, L, R, seed + 2)["logits"])
    for other, v, se in (("no baseline", v_no, se_no), ("RLOO", v_rl, se_rl)):
        z = (v - v_bl) / math.hypot(se, se_bl)
        assert z > Z_VAR, f"unordered_set {v_bl:.4g} vs {other} {v:.4g}: z = {z:.2f} (seed={seed})"
