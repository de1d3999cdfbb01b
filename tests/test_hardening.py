"""Hardened input and run directories (issue 13 C/D): the mutation battery, locks, file modes, resume checks,
interrupted status, size limits and semantic validation."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from cli_mutations import _HELD, _hold_lock, cli_cases
from mutation_harness import run_case
from suite_mutations import BASE, Case, mutate, suite_cases, to_toml

from harness import registry
from harness.cli.main import main
from harness.measure.runner import run_cell
from harness.problems import ProblemError, ProblemSpec
from harness.runs.store import RunStore, load_run
from harness.runs.suite_run import RunError, RunRequest, execute, plan, run_options
from harness.suite.expand import SuiteError, expand

SUITE_CASES = suite_cases()
CLI_CASES = cli_cases()
# what the error must say beyond "error: FILE: KEY" for a few cases: the valid choices, the count, the limit
NEEDLES = {
    "problem.objective=unknown": ["objective", "valid:", "quadratic"],
    "suite.name=dotdot": ["suite.name", "plain name"],
    "huge: 1.7e6 cells": ["cells", "estimated", "--yes", "max_cells"],
    "problem.dims=1e12": ["dims", "TiB", "max_memory"],
    "sweep.n_samples=2^40": ["n_samples", "max_memory"],
    "student_t.df=2.0/quadratic": ["params.df", "> 2", "does not exist"],
    "categorical.target_len": ["objective_params.target", "3 finite numbers"],
    "dirichlet.K=1": ["at least 2 categories"],
    "exclude.estimator=int": ["exclude[0].estimator", "string pattern"],
    "file: UTF-16": ["file", "UTF-8"],
    "show --param unknown": ["--param", "valid:", "loc", "scale"],
    "resume --seed 7": ["seed", "differences"],
    "resume without --no-timing": ["timing", "differences"],
    "resume while locked": ["lock"],
    "all cells fail: exit 1": ["FAILED", "exit 1"],
    "report -o a directory": ["is a directory"],
    "show on garbage meta.json": ["meta.json", "corrupt"],
}


def test_battery_is_large_enough() -> None:
    assert len(SUITE_CASES) >= 100 and len(CLI_CASES) >= 45
    assert len({c.name for c in SUITE_CASES + CLI_CASES}) == len(SUITE_CASES) + len(CLI_CASES)


@pytest.fixture(scope="module", autouse=True)
def _loaded() -> None:
    registry.ensure_loaded()


def _check(case: Case, tmp_path: Path) -> None:
    out = run_case(case, tmp_path, timeout=120)
    assert out.clean, f"{case.name}: {out.why}\n{out.stderr[-2000:]}"
    for needle in NEEDLES.get(case.name, []):
        assert needle in out.stderr, f"{case.name}: {needle!r} not in {out.stderr!r}"


@pytest.mark.parametrize("case", SUITE_CASES, ids=[c.name for c in SUITE_CASES])
def test_bad_suite_is_refused_cleanly(case: Case, tmp_path: Path) -> None:
    _check(case, tmp_path)


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_bad_invocation_is_refused_cleanly(case: Case, tmp_path: Path) -> None:
    _check(case, tmp_path)


# -- run directories -----------------------------------------------------------------------------------------
def _suite(tmp_path: Path, data: dict | None = None) -> Path:
    f = tmp_path / "suite.toml"
    f.write_text(to_toml(data or mutate("sweep.0.n_samples", [2, 4])))
    return f


def _quiet_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_files_follow_the_umask(umask: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = os.umask(umask)
    try:
        rc, err = _quiet_main(["run", str(_suite(tmp_path)), "--out", str(tmp_path / "run")], capsys)
    finally:
        os.umask(old)
    assert rc == 0, err
    run = tmp_path / "run"
    files = [run / "meta.json", run / "results.parquet", *sorted((run / "cells").glob("*.json"))]
    assert len(files) == 4
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f"{f.name}: {oct(f.stat().st_mode)}"


def test_resume_with_the_same_options_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite, run = _suite(tmp_path), tmp_path / "run"
    assert _quiet_main(["run", str(suite), "--out", str(run), "--seed", "3"], capsys)[0] == 0
    rc, err = _quiet_main(["run", str(suite), "--out", str(run), "--seed", "3", "--resume"], capsys)
    assert rc == 0, err
    assert json.loads((run / "meta.json").read_text())["run_options"]["seed"] == ["3"]


def _interrupting_runner(after: int, how: str):
    calls = {"n": 0}

    def runner(cell):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] > after:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            raise KeyboardInterrupt
        return run_cell(cell)

    return runner


@pytest.mark.parametrize("how", ["keyboard", "sigterm"])
def test_interrupted_run_says_so_and_resume_cleans_temporaries(how: str, tmp_path: Path) -> None:
    req = RunRequest(suite=str(_suite(tmp_path)), out=tmp_path / "run")
    exp = plan(req)
    assert len(exp.cells) == 2
    with pytest.raises(KeyboardInterrupt):
        execute(exp, req.suite, tmp_path / "run", runner=_interrupting_runner(1, how), run_opts=run_options(exp.cells))
    store = RunStore(tmp_path / "run")
    meta = store.read_meta()
    assert meta["status"] == "interrupted" and meta["cells_done"] == 1
    assert not store.lock_held(), "the lock is released when the run ends"
    stale = [tmp_path / "run" / ".meta.json.x1.tmp", tmp_path / "run" / "cells" / ".abc.json.x2.tmp"]
    for p in stale:
        p.write_text("partial")
    notes: list[str] = []

    class Sink:
        def write(self, s: str) -> None:
            notes.append(s)

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    execute(exp, req.suite, tmp_path / "run", resume=True, stream=Sink(), run_opts=run_options(exp.cells))
    assert not any(p.exists() for p in stale)
    assert sum("stale temporary" in n for n in notes) == 2
    assert store.read_meta()["status"] == "complete"


def test_killed_run_reads_as_interrupted_until_resumed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite, run = _suite(tmp_path), tmp_path / "run"
    assert _quiet_main(["run", str(suite), "--out", str(run)], capsys)[0] == 0
    meta = json.loads((run / "meta.json").read_text())
    meta["status"] = "running"  # what a kill -9 leaves behind
    (run / "meta.json").write_text(json.dumps(meta))
    assert load_run(run)[1]["status"] == "interrupted"
    _hold_lock(run)  # a live run holds the lock: then "running" is true
    try:
        assert load_run(run)[1]["status"] == "running"
    finally:
        os.close(_HELD.pop())


def test_lock_refuses_a_second_writer(tmp_path: Path) -> None:
    req = RunRequest(suite=str(_suite(tmp_path)), out=tmp_path / "run")
    exp = plan(req)
    first = RunStore(tmp_path / "run")
    first.acquire_lock()
    try:
        with pytest.raises(RunError, match="lock"):
            execute(exp, req.suite, tmp_path / "run")
        assert not (tmp_path / "run" / "meta.json").exists()
    finally:
        first.release_lock()
    execute(exp, req.suite, tmp_path / "run")
    assert RunStore(tmp_path / "run").read_meta()["status"] == "complete"


# -- size limits ---------------------------------------------------------------------------------------------
def test_max_cells_and_yes(tmp_path: Path) -> None:
    data = mutate("sweep.0.n_samples", list(range(1, 31)))  # 30 cells
    with pytest.raises(SuiteError, match="30 cells"):
        expand("s.toml", mutate("suite.max_cells", 10, data))
    assert len(expand("s.toml", mutate("suite.max_cells", 30, data)).cells) == 30
    assert len(expand("s.toml", mutate("suite.max_cells", 10, data), confirmed=True).cells) == 30


@pytest.mark.parametrize("suite", ["suites/smoke.toml", "suites/default.toml", "suites/discrete.toml"])
def test_cheap_count_bounds_the_expansion(suite: str) -> None:
    """The limit is applied to a count made before expanding; it must never undercount."""
    from harness.suite.expand import _plan_sweep, load_suite  # the count's own parts

    root = Path(__file__).resolve().parents[1]
    data = load_suite(root / suite)
    exp = expand(root / suite, data)
    ctx = {
        "known": registry.estimator_names(),
        "backends": None,
        "devices": None,
        "replicates": None,
        "R": 2000,
        "cap": 2**20,
        "dtype": None,
        "dtype_default": "float64",
        "budget": 2**28,
    }
    counted = sum(_plan_sweep(suite, i, sw, ctx).count()[0] for i, sw in enumerate(data["sweep"]))
    dropped_late = exp.dropped.get("excluded by [[exclude]]", 0) + sum(
        n for why, n in exp.dropped.items() if why.startswith("duplicate")
    )
    assert counted == len(exp.cells) + dropped_late


# -- semantic validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("objective", "df", "ok"),
    [
        ("quadratic", 2.0, False),
        ("quadratic", 2.5, True),
        ("linear", 1.0, False),
        ("linear", 1.5, True),
        ("cos", 0.5, True),
        ("exp_quad", 1.0, True),
    ],
)
def test_student_t_moment_conditions(objective: str, df: float, ok: bool) -> None:
    spec = ProblemSpec("student_t", objective, 2, {"df": [5.0, df]})
    if ok:
        assert spec.build().exact is not None
    else:
        with pytest.raises(ProblemError, match="params.df"):
            spec.build()


def test_dict_suite_through_the_api_is_validated(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="suite.name"):
        plan(RunRequest(suite=mutate("suite.name", "../escape"), results_dir=tmp_path))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("label", "name"), [("<dict>", "dict"), ("my suite.toml", "my_suite"), ("..toml", "suite")])
def test_default_run_name_is_a_plain_name(label: str, name: str) -> None:
    data = mutate("suite.name", None)
    del data["suite"]["name"]
    assert expand(label, data).suite["name"] == name


def test_base_suite_is_valid() -> None:
    assert len(expand("s.toml", BASE).cells) == 1
