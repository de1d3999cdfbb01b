"""Registry: registration, capabilities, wildcard listing, lookups and duplicate detection."""

from __future__ import annotations

import pytest

from harness import registry
from harness.registry import Hyper, RegistryError, get_estimator, list_estimators, register_estimator


def test_builtins_cover_three_backends() -> None:
    for name in ("pathwise", "score_function", "score_function_rloo", "enumeration"):
        assert {s.backend for s in list_estimators(name)} == {"numpy", "torch", "jax"}


def test_wildcards_and_filters() -> None:
    names = {s.name for s in list_estimators("score*")}
    assert {"score_function", "score_function_rloo"} <= names
    assert all(s.backend == "jax" for s in list_estimators("*", backend="jax"))
    assert all(s.applies_to("bernoulli") for s in list_estimators(distribution="bernoulli"))
    assert not any(s.name == "pathwise" for s in list_estimators(distribution="bernoulli"))


def test_unknown_lookup_lists_valid_choices() -> None:
    with pytest.raises(RegistryError, match="valid: .*pathwise"):
        get_estimator("no_such_estimator", "numpy")


def test_duplicate_registration_names_both_sources() -> None:
    def first(ctx):  # pragma: no cover - never called
        return {}

    def second(ctx):  # pragma: no cover - never called
        return {}

    register_estimator("dup_test_estimator", "numpy", distributions=["normal"], unbiased=True)(first)
    try:
        with pytest.raises(RegistryError) as info:
            register_estimator("dup_test_estimator", "numpy", distributions=["normal"], unbiased=True)(second)
        msg = str(info.value)
        assert "first" in msg and "second" in msg and "test_registry.py" in msg
    finally:
        registry.unregister("dup_test_estimator", "numpy")


def test_unknown_backend_rejected() -> None:
    with pytest.raises(RegistryError, match="valid"):
        register_estimator("x", "tensorflow", distributions=["normal"], unbiased=True)


def test_hyper_validation() -> None:
    h = Hyper(0.5, low=1e-3, high=10.0)
    assert h.validate(1.0) is None
    assert "must be >=" in h.validate(0.0)
    assert "number" in h.validate("hot")
    c = Hyper(True, choices=(True, False))
    assert c.validate(False) is None and "one of" in c.validate(3)


def test_capabilities_are_declared() -> None:
    for s in list_estimators():
        assert s.distributions, s.name
        assert isinstance(s.unbiased, bool)
        assert s.reference, f"{s.name}[{s.backend}] declares no reference"
        assert s.doc, f"{s.name}[{s.backend}] has no docstring"
