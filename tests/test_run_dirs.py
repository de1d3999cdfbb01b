"""Every run directory gets the same guarantees from the one writer (harness/runs/writer.py), and caches heal.

The training battery (tests/train_mutations.py: bad requests, output paths, run kinds, caches, limits, a full disk)
in forked children; then, in detail: a full disk leaves a resumable ``interrupted`` run that finishes with the same
results; statuses ``complete`` / ``interrupted`` / ``failed``; file modes; a kill -9 of ``stochgrad train`` resumed
to bit-identical curves; corrupt checkpoint, truth and unit-state files reported, moved aside and rebuilt; the one
trainer behind the checkpoints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mutation_harness import run_case
from suite_mutations import BASE, Case, to_toml
from train_mutations import TRAIN_BASE, disk_full_after, train_cases

from harness import registry
from harness.cli.main import main
from harness.runs.store import load_run

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CASES = train_cases()
NEEDLES = {
    "train: lr = inf": ["train[0].lr", "finite"],
    "train: steps = 1e13": ["estimated", "--yes"],
    "train: latent_dim = 1e6": ["MiB", "--yes", "nothing was allocated"],
    "train: name ../../escape": ["suite.name", "plain name"],
    "train --out ''": ["--out", "empty"],
    "run --out ''": ["--out", "empty"],
    "train --out foreign results.parquet": ["not empty", "no meta.json", "results.parquet"],
    "train --resume into a benchmark run": ["benchmark run", "training"],
    "run --resume into a training run": ["training run", "benchmark"],
    "train --resume with other units": ["unit_keys"],
    "train --resume while locked": ["lock"],
    "compare training vs benchmark": ["training run", "benchmark run", "same kind"],
    "train: STOCHGRAD_CACHE /dev/null": ["STOCHGRAD_CACHE=/dev/null", "not a directory"],
    "run workloads: STOCHGRAD_CACHE /proc": ["STOCHGRAD_CACHE=/proc"],
    "run workloads: checkpoint 1e14": ["checkpoints", "estimated", "--yes"],
    "show a training run": ["units 1/1", "disarm", "test_bound"],
    "train: disk full after 1 file(s)": ["disk full", "--resume"],
    "suite file (run): a FIFO": ["FIFO", "not a regular file"],
    "suite file (train): a FIFO": ["FIFO", "not a regular file"],
    "suite file (run): /dev/zero": ["character device"],
    "suite file (train): /dev/zero": ["character device"],
    "suite file (run): nested 1000 deep": ["nested too deeply"],
    "suite file (train): nested 1000 deep": ["nested too deeply"],
    "suite file (run): UTF-8 BOM": ["byte-order mark (BOM)"],
    "suite file (train): UTF-8 BOM": ["byte-order mark (BOM)"],
    "suite file (run): 5 MiB of comments": ["at most 4 MiB"],
    "workloads: latent_dim = 1e6 --dry-run": ["MiB", "--yes"],
    "workloads: batch_size = 0": ["batch_size", "positive integer"],
    "run options: --torch-compile bogus": ["--torch-compile", "unknown torch.compile backend 'bogus'", "inductor"],
    "dask: --scheduler http://": ["unknown address scheme 'http'", "tcp"],
}


@pytest.fixture(scope="module", autouse=True)
def _loaded() -> None:
    registry.ensure_loaded()


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.training import checkpoints

    monkeypatch.setenv("STOCHGRAD_CACHE", str(tmp_path / "cache"))
    checkpoints.forget_memory()


def test_training_battery_is_large_enough() -> None:
    assert len(TRAIN_CASES) >= 60 and len({c.name for c in TRAIN_CASES}) == len(TRAIN_CASES)


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c.name for c in TRAIN_CASES])
def test_training_case_is_handled_cleanly(case: Case, tmp_path: Path) -> None:
    out = run_case(case, tmp_path, timeout=180)
    assert out.clean, f"{case.name}: {out.why}\n{out.stderr[-2000:]}"
    for needle in NEEDLES.get(case.name, []):
        assert needle in out.stderr, f"{case.name}: {needle!r} not in {out.stderr!r}"
    if case.name.startswith(("train: disk full", "run: disk full")):
        lines = [ln for ln in out.stderr.splitlines() if ln.strip() and not ln.startswith("expanded")]
        assert len(lines) == 1 and lines[0].startswith("error: disk full"), out.stderr


# -- a full disk ----------------------------------------------------------------------------------------------
def _strip_time(df: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in df.columns if "time" in c or "seconds" in c or c.endswith("_per_s") or c == "run_id"]
    key = [c for c in ("unit_key", "step", "estimator", "param") if c in df.columns]
    return df.drop(columns=drop).sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("kind", ["training", "benchmark"])
def test_disk_full_leaves_a_resumable_interrupted_run(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC from the third file write on (fault injection in harness.files.atomic): one line, exit 2, status
    interrupted; after space is freed, --resume finishes with the results of an uninterrupted run."""
    import harness.files.atomic as atomic

    data = TRAIN_BASE if kind == "training" else BASE
    cmd = "train" if kind == "training" else "run"
    suite = tmp_path / "s.toml"
    suite.write_text(
        to_toml(
            {**data, "train": [{**TRAIN_BASE["train"][0], "estimators": ["disarm", "arm"]}]}
            if kind == "training"
            else data
        )
    )
    assert main([cmd, str(suite), "--out", str(tmp_path / "straight")]) == 0
    capsys.readouterr()
    real = atomic._open_tmp
    disk_full_after(2)
    try:
        rc = main([cmd, str(suite), "--out", str(tmp_path / "run")])
    finally:
        atomic._open_tmp = real  # space freed
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("expanded", "["))]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: disk full"), err
    assert "Traceback" not in err
    meta = load_run(tmp_path / "run")[1]
    assert meta["status"] == "interrupted"
    assert main([cmd, str(suite), "--out", str(tmp_path / "run"), "--resume"]) == 0
    df, meta = load_run(tmp_path / "run")
    assert meta["status"] == "complete"
    a = pd.read_parquet(tmp_path / "straight" / "results.parquet")
    pd.testing.assert_frame_equal(_strip_time(a), _strip_time(df), check_like=True)
    if kind == "training":
        c1, c2 = (pd.read_parquet(tmp_path / d / "curves.parquet") for d in ("straight", "run"))
        pd.testing.assert_frame_equal(_strip_time(c1), _strip_time(c2), check_exact=True)


# -- statuses, modes ----------------------------------------------------------------------------------------
def _units(n: int = 2) -> tuple[dict, list[dict]]:
    from harness.suite.training import expand_table

    t = {**TRAIN_BASE["train"][0], "seeds": list(range(n))}
    return {"name": "st"}, expand_table("x.toml", "train[0]", t, {"name": "st"})


@pytest.mark.parametrize(("raise_", "status"), [(KeyboardInterrupt, "interrupted"), (RuntimeError, "failed")])
def test_training_status_after_an_interrupt_or_an_error(raise_: type, status: str, tmp_path: Path) -> None:
    from harness.runs.store import RunStore
    from harness.runs.training_run import run_training

    suite, units = _units()

    def runner(fn, us):  # noqa: ANN001, ANN202
        yield fn(us[0])
        raise raise_("stop")

    with pytest.raises(raise_):
        run_training(suite, units, tmp_path / "run", runner=runner, log=lambda s: None)
    store = RunStore(tmp_path / "run")
    meta = store.read_meta()
    assert meta["status"] == status and meta["kind"] == "training" and meta["units_done"] == 1
    assert not store.lock_held(), "the lock is released when the run ends"
    assert ("error" in meta) == (status == "failed")
    assert len(pd.read_parquet(tmp_path / "run" / "results.parquet")) == 1, "tables are written on the way out"
    curves, res = run_training(suite, units, tmp_path / "run", resume=True, log=lambda s: None)
    assert store.read_meta()["status"] == "complete" and len(res) == 2


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_training_files_follow_the_umask(umask: int, tmp_path: Path) -> None:
    from harness.runs.training_run import run_training

    suite, units = _units(1)
    old = os.umask(umask)
    try:
        run_training(suite, units, tmp_path / "run", log=lambda s: None)
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"]
    assert {p.suffix for p in files} == {".json", ".parquet", ".npz"}
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f"{f}: {oct(f.stat().st_mode)}"


def test_kill9_of_train_resumes_to_identical_curves(tmp_path: Path) -> None:
    """`stochgrad train` killed with SIGKILL after its first saved unit state, then --resume: the curves equal an
    uninterrupted run's bit for bit (timing columns aside); the killed run reads as interrupted meanwhile."""
    data = {**TRAIN_BASE, "train": [{**TRAIN_BASE["train"][0], "steps": 400, "log_every": 50, "seeds": [0, 1]}]}
    suite = tmp_path / "s.toml"
    suite.write_text(to_toml(data))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    code = "import sys; from harness.cli.main import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "train", str(suite)]
    assert subprocess.run([*cmd, "--out", str(tmp_path / "straight")], env=env, capture_output=True).returncode == 0
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "run")], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "run" / "units").glob("*.npz")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no unit state was saved"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_run(tmp_path / "run")[1]["status"] == "interrupted"
    res = subprocess.run([*cmd, "--out", str(tmp_path / "run"), "--resume"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    c1, c2 = (pd.read_parquet(tmp_path / d / "curves.parquet") for d in ("straight", "run"))
    assert len(c1) == 2 * 9
    pd.testing.assert_frame_equal(_strip_time(c1), _strip_time(c2), check_exact=True)


# -- caches heal ------------------------------------------------------------------------------------------------
def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # "altered": a valid zip with valid CRCs whose first array changed; only the checksum can tell
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        first = next(k for k in sorted(arrays) if not k.startswith("__"))
        arrays[first] = arrays[first] + 1.0
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)


@pytest.mark.parametrize("how", ["truncated", "empty", "altered"])
def test_corrupt_checkpoint_and_truth_are_moved_aside_and_rebuilt(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.targets import workload_truth as truth
    from harness.targets.workload import WorkloadSpec
    from harness.training import checkpoints

    truth._MEMO.clear()  # this process's truths: only the disk cache (the fixture's fresh directory) is read
    ws = WorkloadSpec("vae_bernoulli", {"latent_dim": 3}, checkpoint=4, batch_size=1)
    first = ws.build()
    g0 = first.exact.grads["logits"].copy()
    cache = tmp_path / "cache"
    ckpt = checkpoints.path_for(first.workload, first.cfg, 4)
    truths = sorted(cache.glob("vae_bernoulli-truth-*.npz"))
    assert ckpt.exists() and truths
    _damage(ckpt, how)
    _damage(truths[0], how)
    checkpoints.forget_memory()
    truth._MEMO.clear()
    before = checkpoints.TRAINED_STEPS["count"]
    again = ws.build()
    np.testing.assert_array_equal(again.exact.grads["logits"], g0)
    for k, v in first.state.items():
        np.testing.assert_array_equal(again.state[k], v)
    err = capsys.readouterr().err
    for p in (ckpt, truths[0]):
        assert f"{p}: corrupt cache file" in err and Path(str(p) + ".corrupt").exists(), err
        assert p.exists(), "rebuilt"
    assert checkpoints.TRAINED_STEPS["count"] - before == 4, "the checkpoint was retrained from step 0"


def test_corrupt_unit_state_is_retrained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.runs.training_run import run_training
    from harness.training.loop import train_unit

    suite, units = _units(1)
    straight = train_unit(units[0])
    run = tmp_path / "run"
    run_training(suite, units, run, log=lambda s: None)
    state = next((run / "units").glob("*.npz"))
    _damage(state, "truncated")
    (state.with_suffix(".json")).unlink()  # the unit's outcome is gone too: --resume must train it again
    meta = json.loads((run / "meta.json").read_text())
    meta["status"] = "running"
    (run / "meta.json").write_text(json.dumps(meta))
    _, res = run_training(suite, units, run, resume=True, log=lambda s: None)
    err = capsys.readouterr().err
    assert f"{state}: corrupt cache file" in err and Path(str(state) + ".corrupt").exists()
    assert res["test_bound"].tolist() == [straight["summary"]["test_bound"]]


# -- the one trainer behind the checkpoints -----------------------------------------------------------------
@pytest.mark.parametrize("wname", ["vae_bernoulli", "vae_categorical", "vae_gaussian", "blr"])
def test_checkpoint_zero_is_the_initialization(wname: str) -> None:
    """Step 0 is init_params(config, default_rng(init_seed)), bit for bit (unchanged by the one-trainer move)."""
    from harness.training.checkpoints import load_state
    from harness.workloads import get_workload

    wl = get_workload(wname)
    cfg = wl.resolve({})
    init = wl.init_params(cfg, np.random.default_rng(cfg["init_seed"]))
    got = load_state(wl, cfg, 0)
    assert set(got) == set(init)
    for k in init:
        np.testing.assert_array_equal(got[k], init[k])


def test_checkpoints_are_trained_by_the_registered_estimator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint chain calls the workload's reference estimator through the registry (one trainer)."""
    from harness.training import checkpoints
    from harness.workloads import get_workload

    wl = get_workload("vae_bernoulli")
    impl = registry.get_estimator(wl.train_estimator, "torch")
    calls = []
    real = impl.fn

    def counting(ctx):  # noqa: ANN001, ANN202
        calls.append(ctx.R)
        return real(ctx)

    monkeypatch.setattr(impl, "fn", counting)
    checkpoints.load_state(wl, wl.resolve({"latent_dim": 2}), 3)
    assert calls == [32, 32, 32], "one call per step, the examples of the batch as replicates"


def test_fitted_state_declaration_is_validated() -> None:
    with pytest.raises(registry.RegistryError, match="state"):
        registry.register_estimator("bad_state_decl", distributions=("normal",), unbiased=True, state=object())
    assert "bad_state_decl" not in registry.estimator_names()
