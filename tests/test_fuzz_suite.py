"""Property-based fuzz of the suite parser and expander: any generated suite expands or raises the harness's own
input errors (SuiteError, ProblemError, RunError, WorkloadError), never another exception."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suite_mutations import to_toml

from harness.problems import ProblemError
from harness.runs.suite_run import RunError
from harness.suite.expand import SuiteError, expand, load_suite
from harness.workloads import WorkloadError

INPUT_ERRORS = (SuiteError, ProblemError, RunError, WorkloadError)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.integers(-3, 6),
    st.sampled_from([0, 1, 2, 2**40, 10**12, -(2**31)]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.5, 1.5, 2.0, math.nan, math.inf, -1.0]),
    st.booleans(),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_*/.", max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "k", "loc", "x"]), inner, max_size=2)
    ),
    max_leaves=6,
)


def rarely(odd: st.SearchStrategy, usual: st.SearchStrategy) -> st.SearchStrategy:
    """``odd`` about 1 time in 8, else ``usual``."""
    return st.integers(0, 7).flatmap(lambda i: odd if i == 3 else usual)  # not 0 or 7: hypothesis favours the ends


def plausible(keys: dict[str, st.SearchStrategy], junk: list[str]) -> st.SearchStrategy:
    """Tables holding a subset of the real keys, mostly with plausible values (about 7 in 8), sometimes a junk key
    (about 1 in 8), so that a good share of the suites get past the first check and reach the expander."""
    real = st.fixed_dictionaries({}, optional={k: rarely(values, v) for k, v in keys.items()})
    extra = rarely(st.fixed_dictionaries({k: values for k in junk}), st.just({}))
    return st.tuples(real, extra).map(lambda t: {**t[0], **t[1]})


problem = plausible(
    {
        "distribution": st.sampled_from(
            ["normal", "student_t", "categorical", "dirichlet", "gamma", "bernoulli", "nope"]
        ),
        "params": st.dictionaries(
            st.sampled_from(["loc", "scale", "df", "logits", "probs", "concentration", "rate"]),
            scalars | st.lists(st.floats(-3, 3), max_size=4),
            max_size=3,
        ),
        "sweep_params": st.dictionaries(
            st.sampled_from(["loc", "scale", "df"]), st.lists(scalars, max_size=3), max_size=2
        ),
        "objective": st.sampled_from(["quadratic", "cos", "linear", "categorical_target", "exp_quad", "x"]),
        "objective_params": st.dictionaries(st.sampled_from(["k", "omega", "a", "target"]), values, max_size=2),
        "dims": st.lists(st.integers(-1, 3) | st.sampled_from([10**12, 2.5]), min_size=0, max_size=3),
        "options": st.dictionaries(st.sampled_from(["categories", "x"]), scalars, max_size=1),
    },
    ["junk"],
)
sweep = plausible(
    {
        "estimators": st.lists(
            st.sampled_from(["pathwise", "score_function", "gumbel_softmax", "nope", "*rloo"]), max_size=2
        ),
        "backends": st.lists(st.sampled_from(["numpy", "tensorflow"]), max_size=2),
        "devices": st.lists(st.sampled_from(["cpu", "tpu", "cuda:1"]), max_size=2),
        "n_samples": st.lists(st.integers(-1, 5) | st.sampled_from([2**40, 2.5]), max_size=3),
        "replicates": st.integers(2, 100) | st.integers(-1, 1),
        "hyper": st.dictionaries(st.sampled_from(["temperature", "bogus"]), st.lists(scalars, max_size=2), max_size=1),
        "problems": st.lists(problem, min_size=0, max_size=2) | st.sampled_from(["examples", "other"]),
        "dtype": st.sampled_from(["float64", "float32", "float16"]),
    },
    ["samples"],
)
suite_table = plausible(
    {
        "name": st.sampled_from(["fuzz", "fuzz-2", "fuzz_3", "../x", "/abs", "", "a b"]),
        "seed": st.integers(-2, 5),
        "replicates": st.integers(2, 60) | st.integers(-1, 1),
        "precision": st.sampled_from([0.05, 0.5]),
        "max_replicates": st.sampled_from([100, 2**20]),
        "max_memory": st.sampled_from([1, 64, 256.0]),
        "timing_max_s": st.sampled_from([0.01, 0.5]),
        "max_cells": st.sampled_from([1, 5, 1000]),
        "timing": st.booleans(),
    },
    ["replicate"],
)
exclude = st.lists(
    st.dictionaries(st.sampled_from(["estimator", "dim", "n_samples", "backend", "nope"]), values, max_size=2) | values,
    max_size=2,
)
suites = st.fixed_dictionaries(
    {"suite": suite_table, "sweep": rarely(values, st.lists(sweep, min_size=1, max_size=2))},
    optional={"exclude": rarely(values, exclude)},
)


@FUZZ
@given(data=suites)
def test_generated_suites_expand_or_raise_input_errors(data: dict, tmp_path: Path) -> None:
    f = tmp_path / "fuzz.toml"
    f.write_text(to_toml(data))
    try:
        loaded = load_suite(f)
        exp = expand(f, loaded)
    except INPUT_ERRORS as exc:
        assert str(f) in str(exc) or isinstance(exc, ProblemError | WorkloadError), str(exc)
        return
    assert all(c.n_replicates >= 2 and c.n_samples >= 1 for c in exp.cells)


@FUZZ
@given(blob=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_load_or_raise_suite_error(blob: bytes, tmp_path: Path) -> None:
    f = tmp_path / "blob.toml"
    f.write_bytes(blob)
    try:
        load_suite(f)
    except SuiteError as exc:
        assert exc.path == str(f)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**63 - 1, "", [], {}, [[1]], {"a": {"b": 1}}])
def test_serializer_roundtrips(value: object, tmp_path: Path) -> None:
    """The test's own TOML writer must produce TOML that parses back to the same value."""
    import tomllib

    back = tomllib.loads(to_toml({"v": value}))["v"]
    assert back == value or (isinstance(value, float) and math.isnan(value) and math.isnan(back))
