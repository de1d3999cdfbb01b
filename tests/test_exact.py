"""Exact ground truth: closed forms agree with quadrature; enumeration agrees with brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.problems import DISTRIBUTIONS, ProblemSpec, example_problems
from harness.problems.exact import compute_exact


def _quadrature_applies(spec: ProblemSpec) -> bool:
    d = DISTRIBUTIONS[spec.distribution]
    return (
        not d.discrete
        and d.support in ("real", "positive", "unit", "circle")
        and all(p.site_shape == "" for p in d.params.values())
    )


CLOSED = [p for p in example_problems() if p.build().exact.method == "closed_form" and _quadrature_applies(p)]


@pytest.mark.parametrize("spec", CLOSED, ids=[p.label() for p in CLOSED])
def test_closed_form_matches_quadrature(spec: ProblemSpec) -> None:
    prob = spec.build()
    cf, q = compute_exact(prob, "closed_form"), compute_exact(prob, "quadrature")
    assert cf.value == pytest.approx(q.value, rel=1e-8, abs=1e-9)
    for k in cf.grads:
        np.testing.assert_allclose(cf.grads[k], q.grads[k], rtol=1e-7, atol=1e-8, err_msg=f"{spec.label()} {k}")


@pytest.mark.parametrize(
    ("dist", "obj"),
    [
        ("normal", "quadratic"),
        ("normal", "cos"),
        ("normal", "exp_quad"),
        ("gamma", "quadratic"),
        ("gamma", "cos"),
        ("gamma", "linear"),
    ],
)
def test_closed_forms_on_a_grid(dist: str, obj: str) -> None:
    grids = {
        "normal": {"loc": [-2.0, 0.3, 1.7], "scale": [0.2, 1.0, 3.0]},
        "gamma": {"concentration": [0.3, 1.0, 7.5], "rate": [0.5, 2.0, 4.0]},
    }[dist]
    names = list(grids)
    for combo in itertools.product(*grids.values()):
        prob = ProblemSpec(dist, obj, 1, dict(zip(names, combo))).build()
        cf, q = compute_exact(prob, "closed_form"), compute_exact(prob, "quadrature")
        for k in cf.grads:
            np.testing.assert_allclose(cf.grads[k], q.grads[k], rtol=1e-7, atol=1e-9, err_msg=f"{combo} {k}")


def test_quadrature_reports_small_error() -> None:
    prob = ProblemSpec("gamma", "exp_quad", 2, {"concentration": 3.0, "rate": 2.0}).build()
    ex = prob.exact
    assert ex.method == "quadrature" and ex.abs_err < 1e-8


def _brute_force_bernoulli(logits: np.ndarray, t: float) -> np.ndarray:
    """∂/∂logits of E[Σ (b_d - t)^2] by summing over all 2^D joint configurations (no separability used)."""
    p = 1 / (1 + np.exp(-logits))
    grad = np.zeros_like(logits)
    for bits in itertools.product([0.0, 1.0], repeat=len(logits)):
        b = np.array(bits)
        prob = np.prod(np.where(b == 1, p, 1 - p))
        f = np.sum((b - t) ** 2)
        grad += f * prob * (b - p)  # ∇ log p(b) = b - p for the logit parameterization
    return grad


def test_enumeration_matches_brute_force() -> None:
    logits = np.array([-1.0, 0.2, 1.5])
    prob = ProblemSpec("bernoulli", "bernoulli_toy", 3, {"logits": logits.tolist()}).build()
    np.testing.assert_allclose(prob.exact.grads["logits"], _brute_force_bernoulli(logits, 0.499), rtol=1e-12)


def test_categorical_enumeration_matches_softmax_jacobian() -> None:
    lg = np.array([0.3, -1.0, 2.0, 0.0])
    prob = ProblemSpec("categorical", "categorical_target", 1, {"logits": lg.tolist()}).build()
    t = np.arange(1, 5) / 5
    g = np.array([np.sum((np.eye(4)[k] - t) ** 2) for k in range(4)])
    p = np.exp(lg - lg.max()) / np.exp(lg - lg.max()).sum()
    np.testing.assert_allclose(prob.exact.grads["logits"][0], p * (g - p @ g), rtol=1e-12)


def test_every_example_has_exact_ground_truth() -> None:
    for spec in example_problems():
        ex = spec.build().exact
        assert ex.method in ("closed_form", "enumeration", "quadrature")
        for k, v in ex.grads.items():
            assert np.all(np.isfinite(v)), f"{spec.label()}: {k}"
