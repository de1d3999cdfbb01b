"""asv regression tracking: benchmark generation from the registry, `asv check`, a quick run, and a
deliberately worsened estimator flagged by `asv compare` (variance and time).

Fast tests use a tiny suite (one estimator, numpy) through ``$STOCHGRAD_ASV_SUITE`` and a test-only plugin
(``$STOCHGRAD_ASV_PLUGINS``) that switches the RLOO baseline off and adds a 2 ms sleep; the slow test runs
the full demo: a scratch clone with a real worsening commit and ``suites.benchmarks.asv_tools compare``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.problems import ProblemSpec
from harness.registry import applies, implementations
from harness.suite.expand import load_suite
from suites.benchmarks.asv_tools import DEMO_PATCH, flagged

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "suites" / "benchmarks"
TINY_SUITE = """
[suite]
name = "asv-tiny"
seed = 7
replicates = 4000

[[sweep]]
estimators = ["score_function_rloo"]
backends = ["numpy"]
n_samples = [8]
  [[sweep.problems]]
  distribution = "bernoulli"
  params = { probs = 0.3 }
  objective = "bernoulli_toy"
  dims = [2]
"""


def _load_cases():
    spec = importlib.util.spec_from_file_location("stochgrad_asv_cases", BENCH_DIR / "_cases.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


cases = _load_cases()


def test_problem_and_estimator_ids_are_stable_strings():
    spec = ProblemSpec("normal", "quadratic", 2, {"loc": 0.5, "scale": 1.5})
    assert cases.problem_id(spec) == "normal(loc=0.5,scale=1.5)/quadratic/D=2"
    spec = ProblemSpec("gamma", "quadratic", 2, {"concentration": 2.0, "rate": 1.5}, {"k": 1.0})
    assert cases.problem_id(spec) == "gamma(concentration=2,rate=1.5)/quadratic[k=1]/D=2"
    spec = ProblemSpec("categorical", "categorical_target", 2, {"logits": [0.0, 1.0, 2.0]})
    assert cases.problem_id(spec) == "categorical(logits=[0,1,2])/categorical_target/D=2"


def test_catalog_covers_every_applicable_registered_estimator():
    """Introspect the registry: every (estimator, backend) applicable to a regression problem is a case."""
    cat = cases.build_catalog(cases.DEFAULT_SUITE, gpu=False)
    data = load_suite(cases.DEFAULT_SUITE)
    expected = set()
    for sw in data["sweep"]:
        probs = [
            ProblemSpec(t["distribution"], obj, dim, t.get("params", {}), t.get("objective_params", {}))
            for t in sw["problems"]
            for obj in ([t["objective"]] if isinstance(t["objective"], str) else t["objective"])
            for dim in t.get("dims", [1])
        ]
        for spec in implementations():
            if spec.backend not in sw.get("backends", ["numpy", "torch", "jax"]):
                continue
            for prob in probs:
                for L in sw["n_samples"]:
                    if applies(spec, prob.traits(), n_samples=L)[0]:
                        expected.add((spec.name, f"{spec.backend}:cpu", cases.problem_id(prob), str(L)))
    assert expected, "the regression suite selects nothing"
    missing = expected - set(cat.cases)
    assert not missing, f"registered estimators not benchmarked: {sorted(missing)}"
    assert {k[0] for k in expected} == set(cat.estimators)
    for axis in cat.params:
        assert axis and all(isinstance(v, str) for v in axis)
    assert cat.backends[0] == "numpy:cpu"


def test_skips_are_not_implemented_errors():
    cat = cases.build_catalog(cases.DEFAULT_SUITE, gpu=True)
    normal = next(p for p in cat.problems if p.startswith("normal("))
    with pytest.raises(NotImplementedError, match="not a cell"):
        cat.cell("enumeration", "numpy:cpu", normal, cat.n_samples[0])  # enumeration: discrete only
    assert ("pathwise", "torch:cuda", normal, cat.n_samples[0]) in cat.cases  # GPU cells exist when asked
    from harness.backends import get_backend

    if get_backend("torch").device_error("cuda"):
        with pytest.raises(NotImplementedError, match="unavailable"):
            cat.cell("pathwise", "torch:cuda", normal, cat.n_samples[0])


def test_track_values_are_deterministic(tmp_path, monkeypatch):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    monkeypatch.delenv(cases.MEMO_ENV, raising=False)
    cat = cases.build_catalog(suite, gpu=False)
    (key,) = cat.cases
    first = dict(cases.accuracy(cat, key))
    cases._ACCURACY.clear()
    second = cases.accuracy(cat, key)
    assert first["variance"] == second["variance"] and first["bias_p"] == second["bias_p"], (key, cat.seed(key))
    assert cat.seed(key) == cases.build_catalog(suite, gpu=False).seed(key)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCHGRAD_ASV")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), ASV_PYTHONPATH=str(ROOT), STOCHGRAD_ASV_CODE_ROOT=str(ROOT))
    env.update(OMP_NUM_THREADS="1", STOCHGRAD_ASV_GPU="0", **extra)
    return env


def _asv(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "asv", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return r


def test_asv_check_passes(tmp_path):
    r = _asv(["check", "--python=same", "--config", str(ROOT / "asv.conf.json")], ROOT, _env(tmp_path))
    assert r.returncode == 0 and "No problems found" in r.stdout, r.stdout + r.stderr


def _git(cwd: Path, *args: str) -> str:
    g = ["-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *g, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_quick_run_and_worsened_estimator_flagged(tmp_path):
    """Tiny suite: a --quick run produces results; the worsened plugin is flagged on variance and time."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "worse")
    head = _git(repo, "rev-parse", "HEAD")
    conf = json.loads(
        "\n".join(
            line for line in (ROOT / "asv.conf.json").read_text().splitlines() if not line.strip().startswith("//")
        )
    )
    conf.update(
        repo=str(repo),
        branches=["HEAD"],
        benchmark_dir=str(BENCH_DIR),
        results_dir=str(tmp_path / "results"),
        html_dir=str(tmp_path / "html"),
        env_dir=str(tmp_path / "env"),
    )
    cfg = tmp_path / "asv.conf.json"
    cfg.write_text(json.dumps(conf))
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    plugin = tmp_path / "worse_rloo.py"
    plugin.write_text(DEMO_PATCH)
    env = _env(tmp_path, STOCHGRAD_ASV_SUITE=str(suite))
    r = _asv(["machine", "--yes", "--machine", "testbox", "--config", str(cfg)], tmp_path, env)
    assert r.returncode == 0, r.stdout + r.stderr
    run = ["run", "--config", str(cfg), "--python=same", "--machine", "testbox", "--show-stderr"]
    r = _asv([*run, "--quick", "--set-commit-hash", base], tmp_path, env)
    assert r.returncode == 0, r.stdout + r.stderr
    files = list((tmp_path / "results" / "testbox").glob(f"{base[:8]}*.json"))
    assert files, r.stdout
    results = json.loads(files[0].read_text())["results"]
    for name in ("time_estimator", "track_variance", "track_bias", "peakmem_estimate"):
        vals = next(v[0] for k, v in results.items() if k.endswith(name))
        assert vals and all(x is not None and x == x and x > 0 for x in vals), (name, vals)
    # a --quick timing is one call (noisy on a loaded machine): measure both commits properly for compare
    r = _asv([*run, "--record-samples", "--set-commit-hash", base], tmp_path, env)
    assert r.returncode == 0, r.stdout + r.stderr
    worse_env = {**env, "STOCHGRAD_ASV_PLUGINS": str(plugin)}
    r = _asv([*run, "--record-samples", "--set-commit-hash", head], tmp_path, worse_env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _asv(["compare", "--config", str(cfg), "--machine", "testbox", "--factor", "1.2", base, head], tmp_path, env)
    assert r.returncode == 0, r.stdout + r.stderr
    worse = flagged(r.stdout).get("+", [])
    print(r.stdout)
    assert any("track_variance" in n and "score_function_rloo" in n for n in worse), r.stdout
    assert any("time_estimator" in n and "score_function_rloo" in n for n in worse), r.stdout
    assert not any("track_bias" in n for n in worse), r.stdout  # still unbiased: z stays at the floor


@pytest.mark.slow
def test_demo_script_flags_variance_and_time(tmp_path):
    """Full demo: scratch clone + real worsening commit, `suites.benchmarks.asv_tools compare` on the default suite."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "suites.benchmarks.asv_tools",
            "demo",
            "--workdir",
            str(tmp_path / "demo"),
            "--machine",
            "testbox",
        ],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    worse = flagged(r.stdout).get("+", [])
    for backend in ("numpy:cpu", "torch:cpu"):
        for name in ("track_variance", "time_estimator"):
            assert any(name in n and backend in n for n in worse), (name, backend, r.stdout[-4000:])


ASV_PREFIXES = ("time_", "timeraw_", "track_", "peakmem_", "mem_")


@pytest.mark.parametrize("path", sorted(BENCH_DIR.glob("*.py")), ids=lambda p: p.name)
def test_benchmark_dir_modules_expose_only_their_own_benchmarks(path):
    """asv collects every module-level name with a benchmark prefix in ``suites/benchmarks``, imported or not:
    a script that imports ``time_estimator`` makes asv time it with no arguments, and `asv run` fails. Scripts
    living there import such functions through their module."""
    import ast

    tree = ast.parse(path.read_text())
    imported = [
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if (alias.asname or alias.name).startswith(ASV_PREFIXES)
    ]
    assert not imported, f"{path.name} imports {imported} at module level; asv would run them as benchmarks"
