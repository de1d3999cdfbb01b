"""beta, dirichlet and von_mises: densities, samplers (all backends) and exact ground truth.

- closed forms vs independent quadrature (beta moments; von Mises Bessel ratios; Dirichlet through its
  Beta marginals, with gradients by central differences of the quadrature values);
- log densities integrate to one, agree across backends, and score_np matches differences of logpdf_elem;
- samplers: Kolmogorov-Smirnov against scipy's CDFs on every backend (fixed seeds, Bonferroni), and
  identical draws on identical NumPy-sourced noise across backends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from harness.backends import get_backend
from harness.problems import ProblemSpec, example_problems
from harness.problems.exact import compute_exact

BACKENDS = ("numpy", "torch", "jax")
KS_ALPHA = 1e-4  # per KS test; ~30 tests in this file -> family-wise false alarm < 3e-3


def _quad(f, lo, hi, **kw):
    return integrate.quad(f, lo, hi, epsabs=1e-13, epsrel=1e-11, limit=400, **kw)[0]


# ------------------------------------------------------------------------------------ exact ground truth
@pytest.mark.parametrize(
    "spec",
    [
        ProblemSpec("beta", "quadratic", 2, {"concentration1": [0.6, 3.0], "concentration0": [2.0, 0.9]}, {"k": 0.3}),
        ProblemSpec("beta", "linear", 2, {"concentration1": [0.4, 7.0], "concentration0": [5.0, 1.5]}, {"a": 2.0}),
        ProblemSpec("von_mises", "cos", 2, {"loc": [0.5, 3.0], "concentration": [2.0, 0.3]}, {"omega": 2.0}),
        ProblemSpec("von_mises", "cos", 3, {"loc": [0.5, -3.0, 1.0], "concentration": [2.0, 30.0, 0.05]}),
        ProblemSpec("von_mises", "cos", 2, {"loc": [0.5, 2.0], "concentration": [2.0, 0.7]}, {"omega": 1.5}),
        ProblemSpec("von_mises", "cos", 1, {"loc": -1.2, "concentration": 5.0}, {"omega": -3.0}),
    ],
    ids=lambda s: s.label() + str(dict(s.objective_params)),
)
def test_closed_forms_match_quadrature(spec) -> None:
    p = spec.build()
    cf, qd = compute_exact(p, "closed_form"), compute_exact(p, "quadrature")
    assert abs(cf.value - qd.value) <= 1e-9 * (1 + abs(qd.value)), (cf.value, qd.value)
    for k in cf.grads:
        np.testing.assert_allclose(cf.grads[k], qd.grads[k], rtol=1e-8, atol=1e-9, err_msg=k)


def _dirichlet_by_marginals(alpha: np.ndarray, g) -> float:
    """Σ_k E[g_k(z_k)] with z_k ~ Beta(α_k, α₀ - α_k): the objectives are sums of per-coordinate terms."""
    a0 = alpha.sum()
    return sum(
        _quad(lambda z, k=k: g(k, z) * stats.beta.pdf(z, alpha[k], a0 - alpha[k]), 0, 1) for k in range(len(alpha))
    )


@pytest.mark.parametrize("alpha", [[2.0, 1.0, 3.0], [0.5, 1.0, 2.0, 0.7], [1.2, 4.0]])
@pytest.mark.parametrize("objective", ["categorical_target", "simplex_power"])
def test_dirichlet_closed_forms_by_marginal_quadrature(alpha, objective) -> None:
    alpha = np.asarray(alpha)
    K = alpha.size
    op = {"p": 2.5} if objective == "simplex_power" else {"target": list(np.linspace(0.1, 0.7, K))}
    prob = ProblemSpec("dirichlet", objective, 1, {"concentration": alpha.tolist()}, op).build()
    power = objective == "simplex_power"
    g = (lambda k, z: z**2.5) if power else (lambda k, z: (z - op["target"][k]) ** 2)
    ex = prob.exact
    assert ex.method == "closed_form"
    assert abs(ex.value - _dirichlet_by_marginals(alpha, g)) < 1e-9
    h = 1e-5
    for j in range(K):
        e = np.eye(K)[j] * h
        fd = (_dirichlet_by_marginals(alpha + e, g) - _dirichlet_by_marginals(alpha - e, g)) / (2 * h)
        assert abs(ex.grads["concentration"][0, j] - fd) < 1e-7, (j, ex.grads["concentration"][0, j], fd)


@pytest.mark.parametrize("dist", ["beta", "dirichlet", "von_mises"])
def test_examples_build_with_exact_truth(dist) -> None:
    specs = example_problems(dist)
    assert len(specs) >= 2
    for s in specs:
        p = s.build()
        assert p.dim <= 3
        ex = p.exact
        assert np.isfinite(ex.value) and all(np.all(np.isfinite(v)) for v in ex.grads.values()), s.label()


# ------------------------------------------------------------------------------------------ densities
SITES = {
    "beta": [{"concentration1": 0.6, "concentration0": 2.5}, {"concentration1": 3.0, "concentration0": 1.0}],
    "von_mises": [{"loc": 2.8, "concentration": 0.4}, {"loc": -1.0, "concentration": 40.0}],
}


@pytest.mark.parametrize(("dist", "i"), [(d, i) for d in SITES for i in range(2)])
def test_density_normalized_and_score(dist, i) -> None:
    from harness.problems import get_distribution

    D = get_distribution(dist)
    ps = SITES[dist][i]
    B = get_backend("numpy")
    lo, hi = D.site_support(ps)
    dens = lambda x: math.exp(float(D.logpdf_elem(B, np.float64(x), ps)))
    pts = [ps["loc"]] if dist == "von_mises" else None
    assert abs(_quad(dens, lo, hi, points=pts) - 1) < 1e-9
    z = np.array([0.05, 0.3, 0.9]) if dist == "beta" else np.array([-3.0, -0.5, 1.0, 3.1])
    sc = D.score_np(z, {k: np.float64(v) for k, v in ps.items()})
    for k in ps:
        h = 1e-6
        up = D.logpdf_elem(B, z, {**ps, k: ps[k] + h})
        dn = D.logpdf_elem(B, z, {**ps, k: ps[k] - h})
        np.testing.assert_allclose(sc[k], (up - dn) / (2 * h), rtol=1e-6, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_logpdf_agrees_across_backends(backend) -> None:
    from harness.problems import get_distribution

    B0, B = get_backend("numpy"), get_backend(backend)
    rng = np.random.default_rng(11)
    cases = {
        "beta": (rng.uniform(0.01, 0.99, (3, 2)), {"concentration1": [0.5, 2.0], "concentration0": [3.0, 0.7]}),
        "von_mises": (rng.uniform(-3, 3, (3, 2)), {"loc": [0.5, -2.0], "concentration": [0.3, 900.0]}),
        "dirichlet": (rng.dirichlet([1, 2, 3], (3, 2)), {"concentration": [[0.5, 2.0, 1.0], [3.0, 1.0, 0.2]]}),
    }
    for name, (z, P) in cases.items():
        D = get_distribution(name)
        Pn = {k: np.asarray(v, np.float64) for k, v in P.items()}
        ref = D.logpdf_elem(B0, z, Pn)
        got = B.to_numpy(
            D.logpdf_elem(B, B.asarray(z, "float64", "cpu"), {k: B.asarray(v, "float64", "cpu") for k, v in Pn.items()})
        )
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=name)


# ------------------------------------------------------------------------------------------- samplers
def _draw(dist: str, backend: str, params: dict, L: int, seed: int) -> np.ndarray:
    from harness.problems import get_distribution

    B = get_backend(backend)
    D = get_distribution(dist)
    P = {k: B.asarray(np.asarray(v, np.float64)[None], "float64", "cpu") for k, v in params.items()}
    if backend == "jax":  # compiled once: eager dispatch of the rejection sampler is slow
        import jax

        from harness.backends.jax_backend import JaxNoise

        fn = jax.jit(lambda key: D.sample(B, JaxNoise(key, "float64", B), P, L))
        return B.to_numpy(fn(B.noise(seed, "float64", "cpu").key))[0]
    return B.to_numpy(D.sample(B, B.noise(seed, "float64", "cpu"), P, L))[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_samplers_ks(backend) -> None:
    L, seed = 20000, 20240
    a, b = [0.3, 2.0, 5.0], [1.5, 0.6, 5.0]
    z = _draw("beta", backend, {"concentration1": a, "concentration0": b}, L, seed)
    for d in range(3):
        p = stats.kstest(z[:, d], stats.beta(a[d], b[d]).cdf).pvalue
        assert p > KS_ALPHA, f"beta {backend} coord {d}: KS p={p:.2e} (seed={seed})"
    alpha = np.array([0.5, 1.0, 3.0])
    z = _draw("dirichlet", backend, {"concentration": [alpha]}, L, seed)
    assert np.allclose(z.sum(-1), 1.0, atol=1e-12)
    for k in range(3):  # marginals are Beta(α_k, α₀ - α_k)
        p = stats.kstest(z[:, 0, k], stats.beta(alpha[k], alpha.sum() - alpha[k]).cdf).pvalue
        assert p > KS_ALPHA, f"dirichlet {backend} marginal {k}: KS p={p:.2e} (seed={seed})"
    loc, kap = [0.5, 3.0, -2.0], [2.0, 0.05, 60.0]
    z = _draw("von_mises", backend, {"loc": loc, "concentration": kap}, L, seed)
    assert np.all((z >= -math.pi) & (z < math.pi))
    for d in range(3):
        # CDF on the fixed support [-π, π): F(z) = G(z - μ) - G(-π - μ) with the centred, winding CDF G
        G = lambda x, k=kap[d]: stats.vonmises.cdf(x, k)
        F = lambda x, d=d, G=G: G(x - loc[d]) - G(-math.pi - loc[d])
        p = stats.kstest(z[:, d], F).pvalue
        assert p > KS_ALPHA, f"von_mises {backend} coord {d}: KS p={p:.2e} (seed={seed})"


@pytest.mark.parametrize("dist", ["beta", "dirichlet", "von_mises"])
def test_identical_noise_identical_draws(dist) -> None:
    from harness.problems import get_distribution

    D = get_distribution(dist)
    params = {
        "beta": {"concentration1": [0.5, 2.0], "concentration0": [1.5, 3.0]},
        "dirichlet": {"concentration": [[0.5, 1.0, 3.0], [2.0, 2.0, 0.3]]},
        "von_mises": {"loc": [0.5, -3.0], "concentration": [1.0, 50.0]},
    }[dist]
    out = {}
    for name in BACKENDS:
        B = get_backend(name)
        P = {
            k: B.asarray(np.broadcast_to(np.asarray(v, np.float64), (4, *np.shape(v))), "float64", "cpu")
            for k, v in params.items()
        }
        noise = B.numpy_noise(np.random.default_rng(7), "float64", "cpu")
        out[name] = B.to_numpy(D.sample(B, noise, P, 50))
    for name in ("torch", "jax"):
        np.testing.assert_allclose(out[name], out["numpy"], rtol=1e-11, atol=1e-12, err_msg=f"{dist} {name}")


def test_von_mises_small_and_huge_concentration() -> None:
    """Best-Fisher stays finite and centred at the extremes (κ = 1e-8 is uniform, κ = 1e6 a spike)."""
    z = _draw("von_mises", "numpy", {"loc": [1.0, 1.0], "concentration": [1e-8, 1e6]}, 20000, 5)
    assert np.all(np.isfinite(z))
    assert stats.kstest(z[:, 0], stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > KS_ALPHA
    assert abs(z[:, 1].mean() - 1.0) < 5 * 1e-3 / math.sqrt(20000) + 1e-9
    assert abs(z[:, 1].std() - 1e-3) < 5e-5


def test_dirichlet_categorical_target_variance_identity() -> None:
    """Sanity of the closed form through an identity: E Σ(z-t)² = Σ Var z_k + Σ(E z_k - t_k)²."""
    a = np.array([2.0, 1.0, 3.0])
    a0 = a.sum()
    t = np.array([0.25, 0.5, 0.75])
    var = a * (a0 - a) / (a0**2 * (a0 + 1))
    expected = var.sum() + ((a / a0 - t) ** 2).sum()
    prob = ProblemSpec("dirichlet", "categorical_target", 1, {"concentration": a.tolist()}).build()
    assert abs(prob.exact.value - expected) < 1e-14
