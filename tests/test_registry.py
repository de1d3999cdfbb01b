"""Registry: registration, capabilities, wildcard listing, lookups and duplicate detection."""

from __future__ import annotations

import pytest

import stochgrad as sg
from harness import registry
from harness.registry import Hyper, RegistryError, get_estimator, implementations, register_estimator


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
