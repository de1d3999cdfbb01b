"""End to end: `stochgrad run` on the smoke suite, the results schema, show/list, resume and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.backends import get_backend
from harness.cli.main import main
from harness.files.atomic import atomic_write_parquet
from harness.measure.runner import run_cell
from harness.runs import suite_run as execute_mod
from harness.runs.store import RunStore, load_run
from harness.suite.expand import expand

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "suites" / "smoke.toml"

IDENTITY = [
    "run_id",
    "suite",
    "estimator",
    "backend",
    "device",
    "distribution",
    "objective",
    "dim",
    "n_samples",
    "n_replicates",
    "param",
]
METRICS = [
    "exact_grad",
    "grad_mean",
    "bias",
    "bias_z",
    "variance",
    "variance_ci_low",
    "variance_ci_high",
    "mse",
    "snr",
    "time_median_s",
    "time_iqr_s",
    "compile_time_s",
    "efficiency",
    "nan_fraction",
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "smoke"
    assert main(["run", str(SMOKE), "--out", str(out), "--replicates", "500"]) == 0
    return out


def test_smoke_run_schema(smoke_run: Path) -> None:
    df, meta = load_run(smoke_run)
    assert not df.empty
    for col in IDENTITY + METRICS:
        assert col in df.columns, col
    assert set(df["backend"]) == {"numpy", "torch", "jax"}
    assert (df["n_replicates"] == 500).all()
    assert df["time_median_s"].gt(0).all()
    assert df["variance"].ge(0).all()
    assert (df["variance_ci_low"] <= df["variance"]).all()
    ok = df["variance_ci_valid"]  # heavy-tailed rows: a one-sided lower bound, upper limit NaN
    assert (df.loc[ok, "variance"] <= df.loc[ok, "variance_ci_high"]).all()
    assert df.loc[~ok, "variance_ci_high"].isna().all()
    # one row per cell x parameter
    assert not df.duplicated(["cell_key", "param"]).any()


def test_smoke_run_meta(smoke_run: Path) -> None:
    _, meta = load_run(smoke_run)
    for key in ("suite_text", "git_commit", "machine", "started", "finished", "seeds", "cells_total", "failed_plugins"):
        assert key in meta, key
    m = meta["machine"]
    for key in ("cpu_model", "packages", "threads", "devices", "backends", "platform"):
        assert key in m, key
    assert meta["status"] == "complete" and meta["cells_done"] == meta["cells_total"]
    assert m["packages"]["numpy"] != "not installed"
    assert meta["suite_text"] == SMOKE.read_text()


def test_show_and_list(smoke_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert "pathwise" in out and "variance" in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for needle in ("ESTIMATORS", "DISTRIBUTIONS", "OBJECTIVES", "BACKENDS", "FAILED PLUGINS", "score_function_rloo"):
        assert needle in out
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"estimators", "distributions", "objectives", "backends", "failed_plugins"} <= set(data)


def test_existing_run_dir_is_not_overwritten(smoke_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(SMOKE), "--out", str(smoke_run), "--replicates", "500"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_skips_finished_cells(tmp_path: Path) -> None:
    exp = expand(SMOKE, replicates=200, backends=["numpy"])
    run_dir = tmp_path / "run"
    calls: list[str] = []

    def interrupting(cell):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(cell.key())
        return run_cell(cell)

    with pytest.raises(KeyboardInterrupt):
        execute_mod.execute(exp, SMOKE, run_dir, runner=interrupting)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    assert len(pd.read_parquet(run_dir / "results.parquet")["cell_key"].unique()) == 2
    resumed: list[str] = []

    def counting(cell):
        resumed.append(cell.key())
        return run_cell(cell)

    execute_mod.execute(exp, SMOKE, run_dir, resume=True, runner=counting)
    assert not set(resumed) & set(calls), "finished cells were recomputed"
    assert len(resumed) + len(calls) == len(exp.cells)
    df, meta = load_run(run_dir)
    assert meta["status"] == "complete"
    assert set(df["cell_key"]) == {c.key() for c in exp.cells}


def test_resume_refuses_a_different_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["run", str(SMOKE), "--out", str(out), "--replicates", "100", "--backend", "numpy", "--no-timing"]) == 0
    other = tmp_path / "other.toml"
    other.write_text(SMOKE.read_text().replace("seed = 0", "seed = 1"))
    assert main(["run", str(other), "--out", str(out), "--resume", "--replicates", "100", "--backend", "numpy"]) == 2
    assert "different suite" in capsys.readouterr().err


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.parquet"
    atomic_write_parquet(target, pd.DataFrame({"a": [1, 2]}))

    def boom(self, *a, **k):
        a[0].write(b"PAR1 truncated")  # a partial write into the temporary file
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError):
        atomic_write_parquet(target, pd.DataFrame({"a": [3]}))
    monkeypatch.undo()
    assert pd.read_parquet(target)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"], "temporary files left behind"


def test_unavailable_backend_is_skipped_with_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    be = get_backend("torch")
    monkeypatch.setattr(type(be), "unavailable_reason", lambda self: "torch is not importable: (simulated)")
    out = tmp_path / "r"
    rc = main(["run", str(SMOKE), "--out", str(out), "--replicates", "100", "--backend", "numpy,torch", "--no-timing"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "skipped" in err and "simulated" in err
    df, meta = load_run(out)
    assert set(df["backend"]) == {"numpy"}
    assert meta["skipped"] and all("simulated" in s["reason"] for s in meta["skipped"])


def test_missing_gpu_device_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "cuda" in get_backend("torch").devices():
        pytest.skip("a GPU is present")
    out = tmp_path / "r"
    rc = main(
        [
            "run",
            str(SMOKE),
            "--out",
            str(out),
            "--replicates",
            "100",
            "--backend",
            "torch",
            "--device",
            "cuda",
            "--no-timing",
        ]
    )
    assert rc == 0
    _, meta = load_run(out)
    assert meta["cells_done"] == 0 and len(meta["skipped"]) == meta["cells_total"] > 0
    assert "not available" in meta["skipped"][0]["reason"]


def test_float32_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert main(["run", str(SMOKE), "--out", str(out), "--replicates", "200", "--dtype", "float32", "--no-timing"]) == 0
    df, _ = load_run(out)
    assert set(df["dtype"]) == {"float32"}


def test_run_store_ignores_partial_tmp_files(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.cells_dir.mkdir(parents=True)
    (store.cells_dir / ".abc.json.123.tmp").write_text('{"key": "tru')
    (store.cells_dir / "broken.json").write_text('{"key": "tru')
    assert store.finished() == {}
