"""Registry: registration, capabilities, wildcard listing, lookups and duplicate detection."""

from __future__ import annotations

import pytest

import stochgrad as sg
from harness import registry
from harness.registry import Hyper, RegistryError, applies, get_estimator, implementations, register_estimator


def test_builtins_cover_three_backends() -> None:
    for name in ("pathwise", "score_function", "score_function_rloo", "enumeration"):
        assert {s.backend for s in implementations(name)} == {"numpy", "torch", "jax"}


def test_wildcards_and_filters() -> None:
    names = {s.name for s in implementations("score*")}
    assert {"score_function", "score_function_rloo"} <= names
    assert all(s.backend == "jax" for s in implementations("*", backend="jax"))
    assert all(s.applies_to("bernoulli") for s in implementations(distribution="bernoulli"))
    assert not any(s.name == "pathwise" for s in implementations(distribution="bernoulli"))


def test_unknown_lookup_lists_valid_choices() -> None:
    with pytest.raises(RegistryError, match="valid: .*pathwise"):
        get_estimator("no_such_estimator", "numpy")


def test_duplicate_registration_names_both_sources() -> None:
    est = register_estimator("dup_test_estimator", distributions=["normal"], unbiased=True, reference="x")

    def first(ctx):  # pragma: no cover - never called
        return {}

    def second(ctx):  # pragma: no cover - never called
        return {}

    est.implementation("numpy")(first)
    try:
        with pytest.raises(RegistryError) as info:
            est.implementation("numpy")(second)
        msg = str(info.value)
        assert "first" in msg and "second" in msg and "test_registry.py" in msg
    finally:
        registry.unregister("dup_test_estimator")


def test_declared_once_implemented_per_backend() -> None:
    est = register_estimator("decl_test", distributions=("normal",), unbiased=True, min_samples=2, reference="r")
    try:
        est.implementation("torch", "jax")(lambda ctx: {})
        est.implementation("numpy")(lambda ctx: {})
        assert est.backends == ["numpy", "torch", "jax"]
        impl = get_estimator("decl_test", "jax")
        assert impl.min_samples == 2 and impl.distributions == ("normal",) and impl.estimator is est
        assert "decl_test" in sg.list_estimators("decl_*", backend="numpy")
    finally:
        registry.unregister("decl_test")


@pytest.mark.parametrize(
    ("caps", "match"),
    [
        ({"distributions": ["Normal"]}, "unknown distribution 'Normal'; valid: .*normal"),
        ({"distributions": []}, "must not be empty"),
        ({"hyperparameters": {"t": Hyper(5.0, low=0.0, high=1.0)}}, "hyperparameter 't': default 5.0 must be <= 1.0"),
        ({"hyperparameters": {"c": Hyper(3, choices=(1, 2))}}, "default 3 must be one of"),
        ({"requires": ["smooth"]}, "unknown requirement 'smooth'"),
        ({"min_samples": 0}, "min_samples"),
        ({"biased_when": {"nope": 1}}, "unknown hyperparameter 'nope'"),
    ],
)
def test_declaration_validated_at_registration(caps: dict, match: str) -> None:
    kw = {"distributions": ["normal"], "unbiased": True, **caps}
    with pytest.raises(RegistryError, match=match) as info:
        register_estimator("bad_decl_test", **kw)
    assert "test_registry" in str(info.value)  # names the module (plugin) that declared it
    assert "bad_decl_test" not in registry.estimator_names()


def test_unknown_backend_rejected() -> None:
    est = register_estimator("x_backend_test", distributions=["normal"], unbiased=True)
    try:
        with pytest.raises(RegistryError, match="unknown backend 'tensorflow'; valid"):
            est.implementation("tensorflow")
    finally:
        registry.unregister("x_backend_test")


def test_biased_when_hyperparameter() -> None:
    est = register_estimator(
        "bw_test",
        distributions=["normal"],
        unbiased=True,
        hyperparameters={"correction": Hyper(True, choices=(True, False))},
        biased_when={"correction": False},
    )
    try:
        assert est.is_unbiased() and est.is_unbiased({"correction": True})
        assert not est.is_unbiased({"correction": False})
    finally:
        registry.unregister("bw_test")


def test_builtin_modules_are_discovered() -> None:
    import pkgutil

    import estimators

    modules = {m.name for m in pkgutil.iter_modules(estimators.__path__) if not m.name.startswith("_")}
    families = {e.source.rsplit(".", 1)[-1] for e in registry.declarations()}
    assert modules <= families, modules - families


def test_hyper_validation() -> None:
    h = Hyper(0.5, low=1e-3, high=10.0)
    assert h.validate(1.0) is None
    assert "must be >=" in h.validate(0.0)
    assert "number" in h.validate("hot")
    c = Hyper(True, choices=(True, False))
    assert c.validate(False) is None and "one of" in c.validate(3)
    n = Hyper(0, low=0, high=10)
    assert "integer" in n.validate(2.5) and n.validate(3) is None
    assert "finite" in Hyper(0.5, low=0.0).validate(float("nan"))


def test_capabilities_are_declared() -> None:
    for s in implementations():
        assert s.distributions, s.name
        assert isinstance(s.unbiased, bool)
        assert s.reference, f"{s.name}[{s.backend}] declares no reference"
        assert s.doc, f"{s.name}[{s.backend}] has no docstring"


# -- the one capability matcher ---------------------------------------------------------------------------------------
def _decl(name: str, **kw) -> registry.Estimator:
    est = register_estimator(name, **{"distributions": ("normal",), "unbiased": True, **kw})
    est.implementation("numpy", "torch")(lambda ctx: {})
    return est


def test_matcher_reads_declarations_against_traits_in_order() -> None:
    """Every rule of harness.registry.applies, each the first to fail in turn, with its reason."""
    from harness.problems.target import Traits

    base = Traits(name="f", latent="normal")
    try:
        est = _decl("matcher_test", requires=("differentiable",), min_samples=2)
        numpy, torch = est.impls["numpy"], est.impls["torch"]
        assert applies(torch, base, n_samples=2) == (True, "")
        cases = [
            (Traits(name="f", latent="normal", backends=("torch",)), numpy, "f runs on ['torch'] only"),
            (Traits(name="f", latent="gamma"), numpy, "does not apply to gamma"),
            (Traits(name="f", latent="normal", differentiable=False), numpy, "differentiable objective (f is not)"),
            (Traits(name="f", latent="normal", grad_backends=("torch", "jax")), numpy, "on numpy needs an analytic"),
        ]
        for traits, impl, why in cases:
            ok, reason = applies(impl, traits, n_samples=2)
            assert not ok and why in reason, (traits, reason)
        assert applies(torch, Traits(name="f", latent="normal", grad_backends=("torch",)), n_samples=2)[0]
        assert applies(numpy, base, n_samples=1) == (False, "matcher_test needs n_samples L >= 2")
        # a declaration (no backend): only the backend-independent rules
        assert applies(est, Traits(name="f", latent="normal", backends=("jax",), grad_backends=()))[0]
    finally:
        registry.unregister("matcher_test")


def test_matcher_decides_nothing_from_a_name() -> None:
    """Names mean nothing: "enumeration" without ``separable`` applies to a non-separable target; an oracle under an
    ordinary name does not apply where E[f] is unknown; an "_oracle" name without the declaration does."""
    from harness.problems.target import Traits

    opaque = Traits(name="f", latent="normal", separable=False, exact_value=False)
    try:
        plain = _decl("enumeration_matcher_test")
        hidden = _decl("ordinary_matcher_test", oracle=True)
        suffixed = _decl("x_oracle_matcher_test")
        assert applies(plain.impls["numpy"], opaque)[0]
        ok, why = applies(hidden.impls["numpy"], opaque)
        assert not ok and "oracle" in why
        assert applies(hidden.impls["numpy"], Traits(name="f", latent="normal"))[0]
        assert applies(suffixed.impls["numpy"], opaque)[0]
        sep = _decl("separable_matcher_test", requires=("separable",))
        assert "needs a separable objective (f is not)" in applies(sep.impls["numpy"], opaque)[1]
    finally:
        for n in (
            "enumeration_matcher_test",
            "ordinary_matcher_test",
            "x_oracle_matcher_test",
            "separable_matcher_test",
        ):
            registry.unregister(n)


def test_targets_declare_their_traits() -> None:
    """Problems read their objective's declaration; workloads their model's; a training step adds the K-sample bound
    and has no exact value."""
    from harness.problems import ProblemSpec
    from harness.targets.workload import WorkloadSpec
    from harness.training import step_traits
    from harness.workloads import get_workload

    t = ProblemSpec("bernoulli", "bernoulli_toy", 2).traits()
    assert (t.latent, t.separable, t.multi_sample_bound, t.exact_value) == ("bernoulli", True, False, True)
    w = WorkloadSpec("vae_bernoulli", {"latent_dim": 3}).traits()
    assert (w.name, w.latent, w.separable, w.exact_value) == ("vae_bernoulli", "bernoulli", False, True)
    assert set(w.backends) == {"numpy", "torch", "jax"} and "numpy" in w.grad_backends
    s = step_traits(get_workload("vae_bernoulli"))
    assert s.multi_sample_bound and not s.exact_value and s.latent == "bernoulli"
