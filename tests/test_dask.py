"""Cells on a Dask cluster (real worker processes): same numbers as in-process, faults, resume, time limit, bad input.

One local cluster of 2 single-threaded worker processes is shared by the fault tests (it preloads
tests/support/dask_faults.py, whose estimators sleep or kill their own worker); the smoke comparison starts its own
through the public ``workers=2`` option.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import stochgrad as sg
from harness.cli.main import main
from harness.results import SCHEMA
from harness.runs.executors import DaskExecutor, InProcessExecutor
from harness.runs.store import RunStore
from harness.runs.suite_run import execute
from harness.suite.expand import expand

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"
SMOKE = ROOT / "suites" / "smoke.toml"
# timing columns differ between any two runs; everything else must be identical
VARYING = {c.name for c in SCHEMA if c.group == "timing"} | {"run_id", "estimate_seconds", "readout_seconds"}


def same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    cols = sorted(c for c in a.columns if c not in VARYING)
    assert sorted(c for c in b.columns if c not in VARYING) == cols
    key = ["cell_key", "param"]
    a, b = (x.sort_values(key).reset_index(drop=True)[cols] for x in (a, b))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory):
    """The test estimators registered here and in the workers; marks directory in $STOCHGRAD_TEST_MARKS."""
    sys.path.insert(0, str(SUPPORT))
    import dask_faults

    marks = tmp_path_factory.mktemp("marks")
    os.environ["STOCHGRAD_TEST_MARKS"] = str(marks)  # inherited by the worker processes
    dask_faults.register()
    yield marks
    dask_faults.unregister_all()
    os.environ.pop("STOCHGRAD_TEST_MARKS", None)
    sys.path.remove(str(SUPPORT))


@pytest.fixture(scope="module")
def cluster(faults: Path):
    ex = DaskExecutor(workers=2, preload=["dask_faults"], allowed_failures=1, exclusive_timing=True)
    yield ex
    ex.close()


def sleep_suite(seconds: list[float], crash: bool = False) -> dict:
    """One test_sleep cell per entry of ``seconds`` (dims 1, 2, ...), plus a test_crash cell."""
    problems = [
        {"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}, "dims": [d + 1]} for d in range(len(seconds))
    ]
    sweeps = [
        {
            "estimators": ["test_sleep"],
            "backends": ["numpy"],
            "n_samples": [2],
            "problems": [p],
            "hyper": {"seconds": s},
        }
        for p, s in zip(problems, seconds)
    ]
    if crash:
        sweeps.append({"estimators": ["test_crash"], "backends": ["numpy"], "n_samples": [2], "problems": problems[:1]})
    return {"suite": {"name": "faults", "seed": 3, "replicates": 64, "timing": False}, "sweep": sweeps}


def run_dict(suite: dict, out: Path, executor, **kw) -> dict:  # noqa: ANN001
    exp = expand("<dict>", suite)
    execute(exp, suite, out, executor=executor, **kw)
    return RunStore(out).read_meta()


def test_smoke_identical_serially_and_on_two_workers_and_resume_across_executors(tmp_path: Path, cluster) -> None:
    serial = sg.run(SMOKE, out=tmp_path / "serial")
    dask = sg.run(SMOKE, out=tmp_path / "dask", workers=2)
    assert serial.meta["status"] == dask.meta["status"] == "complete"
    assert dask.meta["cluster"]["kind"] == "dask-local" and dask.meta["cluster"]["workers"] == 2
    assert set(dask.meta["cluster"]["threads_per_worker"].values()) == {1}
    assert set(dask.results["threads"]) == {1}  # workers pin their threads
    same_numbers(serial.results, dask.results)
    # resume across executors: drop half the cells of each run, finish the serial one on the cluster and the
    # cluster's in this process; both end equal to the uninterrupted serial run
    for src, executor in (("serial", cluster), ("dask", InProcessExecutor())):
        part = tmp_path / f"{src}-part"
        shutil.copytree(tmp_path / src, part)
        cells = sorted((part / "cells").glob("*.json"))
        for p in cells[::2]:
            p.unlink()
        exp = expand(str(SMOKE))
        execute(exp, SMOKE, part, resume=True, executor=executor)
        resumed = sg.load_run(part)
        assert resumed.meta["status"] == "complete" and len(resumed.meta["cluster_history"]) == 2
        same_numbers(serial.results, resumed.results)


def test_worker_killed_mid_cell_loses_nothing(tmp_path: Path, faults: Path, cluster) -> None:
    for p in faults.iterdir():
        p.unlink()
    victim: list[int] = []

    def kill_first_runner() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not victim:
            marks = sorted(faults.glob("test_sleep-*"))
            if marks:
                victim.append(int(marks[0].read_text()))
                os.kill(victim[0], signal.SIGKILL)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_runner)
    killer.start()
    meta = run_dict(sleep_suite([2.0, 0.2, 0.2, 0.2]), tmp_path / "run", cluster)
    killer.join()
    assert victim, "no cell started within 60 s"
    assert meta["status"] == "complete" and meta["failed"] == [] and meta["cells_done"] == 4
    assert len(list((tmp_path / "run" / "cells").glob("*.json"))) == 4
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert len(df) == 4 * 2 and df["cell_key"].nunique() == 4  # one row per cell and parameter, none twice
    starts = [p.name for p in faults.glob("test_sleep-*")]
    assert len(starts) >= 5, f"the killed cell was not rerun: {starts}"  # 4 cells, one started twice
    assert any(str(victim[0]) not in s for s in starts)


def test_cell_that_kills_its_worker_fails_after_bounded_tries(tmp_path: Path, faults: Path, cluster) -> None:
    for p in faults.iterdir():
        p.unlink()
    meta = run_dict(sleep_suite([0.1] * 4, crash=True), tmp_path / "run", cluster)
    assert meta["status"] == "complete" and meta["cells_done"] == 4
    [failed] = meta["failed"]
    assert failed["cell"].startswith("test_crash") and "worker died 2 times" in failed["error"]
    assert len(list(faults.glob("test_crash-*"))) == 2  # allowed_failures=1: two tries, then given up


def test_cell_timeout_fails_the_cell_and_the_run_goes_on(tmp_path: Path, faults: Path, cluster) -> None:
    meta = run_dict(sleep_suite([600.0, 0.1]), tmp_path / "run", cluster, cell_timeout=3.0)
    assert meta["status"] == "complete" and meta["cells_done"] == 1
    [failed] = meta["failed"]
    assert failed["cell"].startswith("test_sleep") and "time limit" in failed["error"]
    assert cluster.client.wait_for_workers(2, timeout=120) is None  # the stuck worker was restarted


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers: expected a positive integer"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give only one"),
        (["--scheduler", "tcp://127.0.0.1:1"], "cannot connect"),
        (["--scheduler", "nonsense"], "expected an address"),
    ],
)
def test_bad_executor_options_exit_2_and_write_nothing(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    out = tmp_path / "run"
    try:
        rc = main(["run", str(SMOKE), "--out", str(out), *args])
    except SystemExit as exc:  # argparse's own type errors
        rc = exc.code
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "suite_keys, message",
    [
        ({"workers": 0}, "suite.workers"),
        ({"workers": 2, "scheduler": "tcp://h:1"}, "suite.scheduler"),
        ({"cell_timeout": -1}, "suite.cell_timeout"),
        ({"scheduler": 5}, "suite.scheduler"),
        ({"exclusive_timing": "yes"}, "suite.exclusive_timing"),
    ],
)
def test_bad_executor_suite_keys(tmp_path: Path, capsys, suite_keys: dict, message: str) -> None:
    suite = tmp_path / "s.toml"
    keys = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in suite_keys.items())
    suite.write_text(SMOKE.read_text().replace('name = "smoke"', f'name = "smoke"\n{keys}'))
    assert main(["run", str(suite), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_client_killed_mid_run_then_resumed_serially(tmp_path: Path, faults: Path) -> None:
    """kill -9 the client (with its local cluster) mid-run; --resume in-process completes the run directory."""
    import json

    suite = tmp_path / "s.json"
    suite.write_text(json.dumps(sleep_suite([1.0] * 6)))
    script = (
        f"import sys, json; sys.path.insert(0, {str(SUPPORT)!r}); import dask_faults; dask_faults.register(); "
        f"import stochgrad as sg; sg.run(json.load(open({str(suite)!r})), out={str(tmp_path / 'run')!r}, "
        "workers=2)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SUPPORT)])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((tmp_path / "run" / "cells").glob("*.json"))) < 2:
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # the client, its scheduler and its workers
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    done = len(list((tmp_path / "run" / "cells").glob("*.json")))
    assert 2 <= done < 6
    data = json.loads(suite.read_text())
    meta = run_dict(data, tmp_path / "run", InProcessExecutor(), resume=True)
    assert meta["status"] == "complete" and meta["cells_done"] == 6


def test_interleave_and_cost_model_eta() -> None:
    """Round-robin over backends, then estimators, keeps every cell once and each group's order; the ETA is the
    remaining cells' expected cost (group median, else coarser groups) divided by the slots."""
    import io

    from harness.results import CellOutcome
    from harness.runs.progress import CostModel, Progress, interleave

    cells = expand(str(SMOKE)).cells
    mixed = interleave(cells)
    assert sorted(c.key() for c in mixed) == sorted(c.key() for c in cells)
    for g in {(c.backend, c.estimator) for c in cells}:
        assert [c for c in mixed if (c.backend, c.estimator) == g] == [
            c for c in cells if (c.backend, c.estimator) == g
        ]
    assert [c.backend for c in mixed[:3]] == ["numpy", "torch", "jax"]  # every backend among the first cells
    assert len({(c.backend, c.estimator) for c in mixed[:9]}) == 9
    model = CostModel()
    numpy_cell = next(c for c in cells if c.backend == "numpy" and c.estimator == "pathwise")
    jax_cell = next(c for c in cells if c.backend == "jax" and c.estimator == "score_function")
    model.observe(numpy_cell, 1.0)
    model.observe(numpy_cell, 3.0)
    assert model.expected(numpy_cell) == 2.0 and model.expected(jax_cell) == 2.0  # unseen group: overall median
    model.observe(jax_cell, 10.0)
    assert model.expected(jax_cell) == 10.0
    rest = [c for c in cells if c.key() not in (numpy_cell.key(), jax_cell.key())]
    for slots in (1, 2):
        p = Progress([numpy_cell, *rest], io.StringIO(), slots=slots)
        p.update(CellOutcome(numpy_cell, "ok", seconds=4.0))
        assert p.eta() == 4.0 * len(rest) / slots


@pytest.mark.slow
def test_scheduler_lost_mid_run_then_resumed(tmp_path: Path, faults: Path) -> None:
    """An existing cluster's scheduler dies mid-run: the client stops with a clear error (exit 1), the run directory
    is resumable, and --resume in-process completes it."""
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SUPPORT)])}
    dask = str(Path(sys.executable).with_name("dask"))
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--port", str(port), "--no-dashboard"],
            env=env,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [dask, "worker", addr, "--nthreads", "1", "--preload", "dask_faults", "--no-dashboard"],
                env=env,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        suite = tmp_path / "s.json"
        suite.write_text(json.dumps(sleep_suite([1.0] * 5)))
        client = subprocess.Popen(
            [
                sys.executable,
                "-c",
                (
                    f"import sys, json; sys.path.insert(0, {str(SUPPORT)!r}); import dask_faults; "
                    "dask_faults.register(); import stochgrad as sg; from harness.runs.executors import ExecutorError\n"
                    f"try:\n    sg.run(json.load(open({str(suite)!r})), out={str(tmp_path / 'run')!r}, scheduler={addr!r})\n"
                    "except ExecutorError as e:\n    print('LOST:', e); sys.exit(1)"
                ),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list((tmp_path / "run" / "cells").glob("*.json"))) < 1:
            time.sleep(0.1)
        os.killpg(procs[0].pid, signal.SIGKILL)  # the scheduler
        out, _ = client.communicate(timeout=120)
        assert client.returncode == 1 and "LOST: lost the Dask scheduler" in out, out
        meta = json.loads((tmp_path / "run" / "meta.json").read_text())
        assert meta["status"] == "interrupted"
        meta = run_dict(json.loads(suite.read_text()), tmp_path / "run", InProcessExecutor(), resume=True)
        assert meta["status"] == "complete" and meta["cells_done"] == 5
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def test_gpu_cells_request_a_gpu_worker(tmp_path: Path, cluster) -> None:
    """cuda cells ask for the worker resource GPU=1: on a cluster without one they are skipped with the command that
    starts such a worker; a local cluster for a suite with GPU cells gives one worker GPU=1."""
    suite = {
        "suite": {"name": "gpu", "replicates": 64, "timing": False},
        "sweep": [
            {
                "estimators": ["pathwise"],
                "backends": ["torch"],
                "devices": ["cuda"],
                "n_samples": [2],
                "problems": [{"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}}],
            }
        ],
    }
    meta = run_dict(suite, tmp_path / "run", cluster)
    [skipped] = meta["skipped"]
    assert "no worker offers GPU=1" in skipped["reason"] and "--resources GPU=1" in skipped["reason"]
    with DaskExecutor(workers=1, gpu_workers=1) as ex:
        assert list(ex.describe()["resources"].values()) == [{"GPU": 1}]
