"""Estimators cannot corrupt shared state, registration cannot half-load the registry, and a plugin that exits
or interrupts during estimation fails only its cell (issue 22, rows 3, 4, 8); plus the CLI's quiet broken pipe
and the progress count of a run that has not finished (row 16).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stochgrad as sg
from harness import registry
from harness.cli.main import main, run_exit_code
from harness.measure.check import POLICY, iter_check_estimator, mutated_inputs

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = {"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}, "objective": "quadratic", "dims": [1]}


def suite(estimators: list[str], backends: list[str]) -> dict[str, Any]:
    return {
        "suite": {"name": "iso", "seed": 0, "replicates": 400, "timing": False},
        "sweep": [{"estimators": estimators, "backends": backends, "n_samples": [2], "problems": [PROBLEM]}],
    }


@pytest.fixture(scope="module", autouse=True)
def _loaded() -> None:
    registry.ensure_loaded()


def _pathwise_np(ctx: sg.Context) -> dict:
    eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))
    gz = ctx.f_grad(ctx.params["loc"] + ctx.params["scale"] * eps)
    return {"loc": gz.mean(1), "scale": (gz * eps).mean(1)}


def _pathwise_torch(ctx: sg.Context) -> dict:
    eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))
    return ctx.grad(lambda P: ctx.f(P["loc"][:, None] + P["scale"][:, None] * eps).mean(1))


def _writes_np(ctx: sg.Context) -> dict:
    ctx.params["loc"][...] = 246.0  # the in-place write issue 22 found
    return _pathwise_np(ctx)


def _writes_torch(ctx: sg.Context) -> dict:
    ctx.params["loc"].add_(245.0)
    return _pathwise_torch(ctx)


def _rebinds_np(ctx: sg.Context) -> dict:
    ctx.params["loc"] = ctx.params["loc"] + 245.0
    return _pathwise_np(ctx)


@pytest.fixture
def registered() -> Iterator[Callable[..., None]]:
    names: list[str] = []

    def register(name: str, **impls: Callable[[sg.Context], dict]) -> None:
        est = sg.register_estimator(name, distributions=["normal"], unbiased=True, requires=["differentiable"])
        for backend, fn in impls.items():
            est.implementation(backend)(fn)
        names.append(name)

    yield register
    for n in names:
        registry.unregister(n)


def test_in_place_writes_cannot_reach_the_problem_or_later_cells(registered, tmp_path: Path) -> None:
    """Row 3: a plugin writing into ctx.params ran before built-in cells on the same problem, and they reported an
    exact gradient of 246 with bias_z in the thousands.  Now the write fails its own cell (NumPy: a read-only
    input; torch: a watched version counter, the tensor restored), a rebinding stays in the call's own dict, and
    every cell after them is measured against the true gradient
    (d/dloc E[z^2] = 2·0.5 = 1, d/dscale = 2·1.5 = 3)."""
    pytest.importorskip("torch")
    registered("writes_inputs_test", numpy=_writes_np, torch=_writes_torch)
    registered("rebinds_inputs_test", numpy=_rebinds_np)
    run = sg.run(
        suite(["writes_inputs_test", "rebinds_inputs_test", "pathwise"], ["numpy", "torch"]), out=tmp_path / "r"
    )
    failed = {
        f["cell"].split("[")[0] + "/" + f["cell"].split("[")[1].split(":")[0]: f["error"] for f in run.meta["failed"]
    }
    assert sorted(failed) == ["writes_inputs_test/numpy", "writes_inputs_test/torch"], failed
    assert "read-only" in failed["writes_inputs_test/numpy"] and "ctx.params" in failed["writes_inputs_test/numpy"]
    assert "changed its input ctx.params['loc'] in place (restored" in failed["writes_inputs_test/torch"]
    df = run.results
    assert set(df.loc[df.param == "loc", "exact_grad"]) == {1.0}
    assert set(df.loc[df.param == "scale", "exact_grad"]) == {3.0}
    ok = df[df.estimator == "pathwise"]
    assert len(ok) == 4 and (ok.bias_z.abs() < 5).all(), ok[["backend", "param", "bias_z"]]


def test_check_reports_an_implementation_that_mutates_its_inputs(registered) -> None:
    """`stochgrad check` gives writable copies, digests them before and after one call, and fails the
    implementation with verdict ``mutates`` naming the input; a clean estimator reports no change."""
    pytest.importorskip("torch")
    registered("writes_inputs_check", numpy=_writes_np, torch=_writes_torch)
    registered("rebinds_inputs_check", numpy=_rebinds_np)
    for name, backend, want in (
        ("writes_inputs_check", "numpy", "params['loc']"),
        ("writes_inputs_check", "torch", "params['loc']"),
        ("rebinds_inputs_check", "numpy", "params['loc'] (rebound)"),
    ):
        first = next(iter_check_estimator(name, backend, POLICY.with_(R=200)))
        assert first.verdict == "mutates" and want in first.detail, (name, backend, first.line())
    spec = registry.get_estimator("pathwise", "numpy")
    assert mutated_inputs(spec, sg.problem("normal"), L=4) == []
    report = sg.check("writes_inputs_check", "numpy", replicates=200)
    assert report.verdict == "FAIL"


def test_registering_a_builtin_name_first_leaves_the_registry_whole() -> None:
    """Row 4: in a fresh process, declaring `pathwise` before the built-ins load used to give a confusing
    "registered twice" error later and leave list_estimators("score*") empty."""
    code = (
        "import stochgrad as sg\n"
        "try:\n"
        "    sg.register_estimator('pathwise', distributions=['normal'], unbiased=True)\n"
        "except sg.RegistryError as e:\n"
        "    print('ERR', e)\n"
        "print(len(sg.list_estimators('score*')))\n"
        "print(sg.get_estimator('pathwise').source)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ERR estimator 'pathwise' is a built-in estimator"), out
    assert "choose another name" in lines[0]
    assert int(lines[1]) >= 3 and lines[2] == "estimators.pathwise", out


@pytest.mark.parametrize(
    ("raised", "reason"),
    [(SystemExit(0), "SystemExit(0)"), (KeyboardInterrupt(), "KeyboardInterrupt (no Ctrl-C was pressed)")],
)
def test_an_estimator_that_exits_fails_only_its_cell(registered, tmp_path: Path, raised, reason: str) -> None:
    """Row 8: SystemExit(0) from a plugin made `stochgrad run` exit 0 with nothing measured.  Now the cell fails
    with the reason, the other cells run, and the exit status is 1."""

    def exits(ctx: sg.Context) -> dict:
        raise raised

    registered("exits_test", numpy=exits)
    plan = sg.plan(suite(["exits_test", "pathwise"], ["numpy"]), out=tmp_path / "r")
    run = plan.run()
    assert [f["error"] for f in run.meta["failed"]] == [f"the estimator raised {reason}"]
    assert run.meta["cells_done"] == 1
    assert run_exit_code(run.meta) == 1


def test_show_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """Row 10: `stochgrad show RUN | head -1` printed a BrokenPipeError traceback; now it stops quietly with
    141 (128 + SIGPIPE), as a tool killed by SIGPIPE would."""
    sg.run(suite(["pathwise"], ["numpy"]), out=tmp_path / "r")
    # the reader is gone before anything is written (as `| head -1` once it has its line, without the race: with a
    # short output the shell pipeline could finish writing before head exited, and exit 0 under load)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        cmd = [sys.executable, "-m", "harness.cli", "show", str(tmp_path / "r")]
        out = subprocess.run(cmd, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300, cwd=ROOT)
    finally:
        os.close(write_end)
    assert out.returncode == 141 and "Traceback" not in out.stderr, out


def test_show_counts_cells_of_an_unfinished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Row 16: "cells None/54" while running or after a kill: the count comes from the saved cell records."""
    sg.run(suite(["pathwise", "score_function"], ["numpy"]), out=tmp_path / "r")
    meta_path = tmp_path / "r" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("cells_done")
    meta["status"] = "running"
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["show", str(tmp_path / "r")]) == 0
    assert "cells 2/2" in capsys.readouterr().out.splitlines()[0]


def test_problem_arrays_are_read_only() -> None:
    """The problem's parameters, objective parameters and cached exact gradient are shared by every cell."""
    p = sg.problem("normal")
    for arrays in (p.params_np, p.exact.grads):
        for a in arrays.values():
            if isinstance(a, np.ndarray):
                with pytest.raises(ValueError, match="read-only"):
                    a[...] = 0.0


def test_an_estimator_that_exits_fails_only_its_training_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SystemExit from an estimator during training fails its unit (exit 1, the reason recorded); the other
    unit of the same suite trains."""
    from suite_mutations import mutate, to_toml
    from train_mutations import TRAIN_BASE

    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path / "cache"))
    est = sg.register_estimator("exits_train_test", distributions=["bernoulli"], unbiased=True)

    def exits(ctx: sg.Context) -> dict:
        raise SystemExit(0)

    est.implementation("numpy", "torch")(exits)
    try:
        path = tmp_path / "t.toml"
        path.write_text(to_toml(mutate("train.0.estimators", ["exits_train_test", "disarm"], TRAIN_BASE)))
        rc = main(["train", str(path), "--out", str(tmp_path / "run")])
        units = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "units").glob("*.json"))]
        status = {u["unit"]["estimator"] if "unit" in u else u["key"]: u["status"] for u in units}
        assert rc == 1 and sorted(status.values()) == ["failed", "ok"], (rc, status)
        assert any("SystemExit" in u.get("message", "") for u in units)
    finally:
        registry.unregister("exits_train_test")
