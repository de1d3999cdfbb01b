"""Mutation battery of bad suites and bad CLI invocations (the cases); tests/mutation_harness.py runs them.

The promise (issue 13, README "Bad input"): a bad suite or argument ends with ``error: ...`` (argparse's own
``... error: argument ...`` counts), exit status 2, no traceback, and nothing written anywhere under the case's
directory.  Also the TOML writer used here and by the fuzz test (tomli_w is not installed).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE: dict[str, Any] = {
    "suite": {"name": "mut", "seed": 0, "replicates": 50, "timing": False},
    "sweep": [
        {
            "estimators": ["pathwise"],
            "backends": ["numpy"],
            "n_samples": [2],
            "problems": [
                {"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}, "objective": "quadratic", "dims": [1]}
            ],
        }
    ],
}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# as root, permissions do not stop reads or writes: use kernel files that refuse even root
UNREADABLE_ROOT = "/proc/sys/vm/compact_memory"  # write-only
READONLY_DIR_ROOT = "/sys"  # sysfs: mkdir gives EPERM


# -- a tiny TOML writer (tomli_w is not installed) -------------------------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k)


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML text of a dict (nested tables written inline, so any nesting serializes)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in data.items())


# -- cases ---------------------------------------------------------------------------------------------------
Setup = Callable[[Path], list[str]]  # prepares files in the case directory, returns the CLI argv


@dataclass
class Case:
    name: str
    setup: Setup
    expect_rc: int = 2
    may_write: bool = False  # cases whose promise is an exit status, not "nothing written"


def mutate(path: str, value: Any, base: Mapping[str, Any] = BASE) -> dict[str, Any]:
    """BASE with the dotted ``path`` (``sweep.0.problems.0.params``) set to ``value`` (``DELETE`` removes it)."""
    data = copy.deepcopy(dict(base))
    parts = path.split(".")
    node: Any = data
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    last = parts[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()
P0 = "sweep.0.problems.0"


def _problem(dist: str, params: dict[str, Any], objective: str, **more: Any) -> dict[str, Any]:
    return mutate(P0, {"distribution": dist, "params": params, "objective": objective, "dims": [1], **more})


def _run_suite_text(text: str | bytes, *extra: str) -> Setup:
    def setup(d: Path) -> list[str]:
        f = d / "suite.toml"
        f.write_bytes(text if isinstance(text, bytes) else text.replace("@DIR@", str(d)).encode())
        return ["run", str(f), "--results-dir", str(d / "results"), *extra]

    return setup


def suite_cases() -> list[Case]:
    """At least 100 mutated suites: file-level faults, every key with wrong types and out-of-range values."""
    muts: dict[str, dict[str, Any]] = {}
    bad_numbers = {"nan": math.nan, "inf": math.inf, "neg": -1.0, "zero": 0, "str": "x", "list": [1], "bool": True}
    for key in ("precision", "max_seconds", "max_memory", "timing_max_s", "max_replicates"):
        for tag, v in bad_numbers.items():
            muts[f"suite.{key}={tag}"] = mutate(f"suite.{key}", v)
    muts["suite.max_replicates=2.5"] = mutate("suite.max_replicates", 2.5)
    for tag, v in {
        "1": 1,
        "0": 0,
        "2.5": 2.5,
        "1e15": 10**15,
        "2^40": 2**40,
        "str": "x",
        "neg": -3,
        "empty": [],
    }.items():
        muts[f"suite.replicates={tag}"] = mutate("suite.replicates", v)
        muts[f"sweep.replicates={tag}"] = mutate("sweep.0.replicates", v)
    for tag, v in {"neg": -1, "float": 1.5, "str": "x", "bool": True}.items():
        muts[f"suite.seed={tag}"] = mutate("suite.seed", v)
    for tag, v in {"int": 3, "dotdot": "../../x", "slash": "a/b", "empty": "", "abs": "@DIR@/abs"}.items():
        muts[f"suite.name={tag}"] = mutate("suite.name", v)
    muts["suite.description=int"] = mutate("suite.description", 3)
    muts["suite.dtype=float16"] = mutate("suite.dtype", "float16")
    muts["suite.timing=str"] = mutate("suite.timing", "yes")
    muts["suite.unknown"] = mutate("suite.replicate", 5)
    muts["suite=3"] = mutate("suite", 3)
    muts["sweep=3"] = mutate("sweep", 3)
    muts["sweep=[]"] = mutate("sweep", [])
    muts["sweep=[3]"] = mutate("sweep", [3])
    muts["top.unknown"] = mutate("runs", {"x": 1})
    for tag, v in {"int": 3, "empty": [], "unknown": ["nope"], "intlist": [3]}.items():
        muts[f"sweep.estimators={tag}"] = mutate("sweep.0.estimators", v)
    for tag, v in {"tf": ["tensorflow"], "int": [3], "empty": []}.items():
        muts[f"sweep.backends={tag}"] = mutate("sweep.0.backends", v)
    for tag, v in {"tpu": ["tpu"], "int": 3}.items():
        muts[f"sweep.devices={tag}"] = mutate("sweep.0.devices", v)
    for tag, v in {
        "0": [0],
        "neg": [-1],
        "2.5": [2.5],
        "str": ["x"],
        "empty": [],
        "2^40": [2**40],
        "huge": [2**70],
    }.items():
        muts[f"sweep.n_samples={tag}"] = mutate("sweep.0.n_samples", v)
    muts["sweep.dtype=int"] = mutate("sweep.0.dtype", 3)
    muts["sweep.hyper=3"] = mutate("sweep.0.hyper", 3)
    muts["sweep.unknown"] = mutate("sweep.0.samples", [2])
    for tag, v in {"int": 3, "empty": [], "str": "other", "intlist": [3]}.items():
        muts[f"sweep.problems={tag}"] = mutate("sweep.0.problems", v)
    muts["sweep.workloads=3"] = mutate("sweep.0.workloads", 3)
    muts["sweep.workloads=[3]"] = mutate("sweep.0.workloads", [3])
    relaxed = mutate("sweep.0.estimators", ["gumbel_softmax"])
    relaxed = mutate(
        P0,
        {
            "distribution": "categorical",
            "params": {"logits": [0.0, 1.0, 2.0]},
            "objective": "categorical_target",
            "dims": [1],
        },
        relaxed,
    )
    for tag, v in {"nan": math.nan, "inf": math.inf, "str": "x", "neg": -0.5}.items():
        muts[f"hyper.temperature={tag}"] = mutate("sweep.0.hyper", {"temperature": [v]}, relaxed)
    rebar = mutate("sweep.0.estimators", ["rebar"])
    rebar = mutate(
        P0, {"distribution": "bernoulli", "params": {"logits": 0.3}, "objective": "bernoulli_toy", "dims": [1]}, rebar
    )
    for tag, v in {"2.5": 2.5, "nan": math.nan, "str": "ten"}.items():
        muts[f"hyper.fit_steps={tag}"] = mutate("sweep.0.hyper", {"fit_steps": [v]}, rebar)
    for tag, v in {"int": 3, "unknown": "gaussian"}.items():
        muts[f"problem.distribution={tag}"] = mutate(f"{P0}.distribution", v)
    for tag, v in {"int": 5, "str": "x", "list": [1.0]}.items():
        muts[f"problem.params={tag}"] = mutate(f"{P0}.params", v)
    for tag, v in {"str": "a", "nan": math.nan, "inf": math.inf, "table": {"a": 1}, "mismatch": [1.0, 2.0]}.items():
        muts[f"params.loc={tag}"] = mutate(f"{P0}.params.loc", v)
    for tag, v in {"zero": 0.0, "neg": -1.0, "nan": math.nan, "inf": math.inf}.items():
        muts[f"params.scale={tag}"] = mutate(f"{P0}.params.scale", v)
    muts["params.unknown"] = mutate(f"{P0}.params.mean", 0.5)
    for tag, v in {"int": 3, "str": {"scale": "x"}, "nan": {"scale": [math.nan]}, "unknown": {"bogus": [1]}}.items():
        muts[f"problem.sweep_params={tag}"] = mutate(f"{P0}.sweep_params", v)
    for tag, v in {"int": 3, "unknown": "quartic", "empty": [], "wrong_support": "bernoulli_toy"}.items():
        muts[f"problem.objective={tag}"] = mutate(f"{P0}.objective", v)
    for tag, v in {
        "int": 3,
        "str": {"k": "x"},
        "nan": {"k": math.nan},
        "inf": {"k": math.inf},
        "unknown": {"zz": 1.0},
        "list": {"k": [1.0, 2.0]},
        "bool": {"k": True},
    }.items():
        muts[f"problem.objective_params={tag}"] = mutate(f"{P0}.objective_params", v)
    for tag, v in {"0": [0], "1e12": [10**12], "2.5": [2.5], "str": "x", "neg": [-1], "huge": [2**70]}.items():
        muts[f"problem.dims={tag}"] = mutate(f"{P0}.dims", v)
    for tag, v in {"int": 3, "unknown": {"x": 1}}.items():
        muts[f"problem.options={tag}"] = mutate(f"{P0}.options", v)
    muts["problem.unknown"] = mutate(f"{P0}.param", {"loc": 1.0})
    muts["categorical.K=1"] = _problem("categorical", {"logits": [0.0]}, "categorical_target")
    muts["categorical.categories=1"] = _problem("categorical", {}, "categorical_target", options={"categories": 1})
    muts["dirichlet.K=1"] = _problem("dirichlet", {"concentration": [2.0]}, "categorical_target")
    muts["categorical.target_len"] = _problem(
        "categorical", {"logits": [0.0, 1.0, 2.0]}, "categorical_target", objective_params={"target": [0.1, 0.2]}
    )
    muts["categorical.target_str"] = _problem(
        "categorical", {"logits": [0.0, 1.0, 2.0]}, "categorical_target", objective_params={"target": "x"}
    )
    muts["categorical.target_nan"] = _problem(
        "categorical", {"logits": [0.0, 1.0]}, "categorical_target", objective_params={"target": [math.nan, 0.5]}
    )
    for df in (2.0, 1.5, 1.0):
        muts[f"student_t.df={df}/quadratic"] = _problem("student_t", {"df": df}, "quadratic")
    muts["student_t.df=1/linear"] = _problem("student_t", {"df": 1.0}, "linear")
    muts["student_t.sweep_df=2/quadratic"] = _problem("student_t", {}, "quadratic", sweep_params={"df": [5.0, 2.0]})
    muts["gamma.concentration=inf"] = _problem("gamma", {"concentration": math.inf}, "quadratic")
    muts["bernoulli.probs=nan"] = _problem("bernoulli", {"probs": math.nan}, "bernoulli_toy")
    muts["truncated_normal.low>high"] = _problem("truncated_normal", {"low": 1.0, "high": -1.0}, "quadratic")
    for tag, v in {"int": 3, "list_int": [3], "list_str": ["x"], "table": {"estimator": "x"}}.items():
        muts[f"exclude={tag}"] = mutate("exclude", v)
    for tag, v in {
        "estimator=int": {"estimator": 3},
        "dim=str": {"dim": "x"},
        "n_samples=str": {"n_samples": "2"},
        "unknown": {"estimatr": "x"},
        "dim=float": {"dim": 1.5},
        "backend=list_int": {"backend": [1]},
    }.items():
        muts[f"exclude.{tag}"] = mutate("exclude", [v])
    muts["huge: 1.7e6 cells"] = mutate(
        "sweep.0",
        {"estimators": ["*"], "backends": ["numpy"], "n_samples": list(range(1, 401)), "problems": "examples"},
    )
    cases = [Case(name, _run_suite_text(to_toml(data))) for name, data in muts.items()]
    base = to_toml(BASE)

    def directory(d: Path) -> list[str]:
        (d / "suite.toml").mkdir()
        return ["run", str(d / "suite.toml"), "--results-dir", str(d / "results")]

    def under_file(d: Path) -> list[str]:
        (d / "file.toml").write_text(base)
        return ["run", str(d / "file.toml" / "suite.toml"), "--results-dir", str(d / "results")]

    def unreadable(d: Path) -> list[str]:
        f = d / "suite.toml"
        f.write_text(base)
        f.chmod(0)
        return ["run", UNREADABLE_ROOT if IS_ROOT else str(f), "--results-dir", str(d / "results")]

    cases += [
        Case("file: directory", directory),
        Case("file: under a file", under_file),
        Case("file: unreadable", unreadable),
        Case("file: binary", _run_suite_text(bytes(range(256)) * 4)),
        Case("file: UTF-16", _run_suite_text(base.encode("utf-16"))),
        Case("file: latin-1 name", _run_suite_text(base.replace('"mut"', '"m\u00fct"').encode("latin-1"))),
        Case("file: empty", _run_suite_text(b"")),
        Case("file: invalid TOML", _run_suite_text(base + "[[sweep]\n")),
    ]
    return cases
