"""A training run: a training suite's units through an executor into a run directory written by the one run writer.

Layout of ``<run>/``: ``meta.json`` (``kind = "training"``, suite, unit keys, status, environment),
``units/<key>.npz`` (a unit's resumable state, written only by the process training that unit),
``units/<key>.json`` (its outcome, written by this client when the unit returns), ``curves.parquet`` (one row per
unit × logged step) and ``results.parquet`` (one summary row per finished unit), both rebuilt from the outcome files
when the run ends (also when it is interrupted).  Columns: results/README.md.

The directory gets the guarantees of every run directory (:mod:`harness.runs.writer`): lock, status, a resume only
into a training run with the same units, names confined to the results directory, atomic 0644 files, a full disk
ending as a resumable ``interrupted`` run.

``runner(fn, units)`` yields ``fn(unit)`` for each unit dict in any order (default: in-process, in sequence);
:func:`executor_runner` adapts a :mod:`harness.runs.executors` executor (e.g. Dask), since
:func:`harness.training.loop.train_unit` is a module-level function of a JSON-able dict.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from harness.files.atomic import atomic_write_parquet
from harness.registry import get_declaration
from harness.runs.executors import ExecutorError, make_executor, registering_modules
from harness.runs.machine import git_commit, machine_info
from harness.runs.writer import RunError, RunPlan, RunWriter, check_cache, check_out, new_run_dir
from harness.suite.training import load_train_suite, suite_name
from harness.training.loop import train_unit
from harness.training.unit import unit_key
from harness.workloads import get_workload

Runner = Callable[[Callable[[dict], dict], list[dict]], Iterable[dict]]
RECORDS = "units"


def sequential(fn: Callable[[dict], dict], units: list[dict]) -> Iterator[dict]:
    """The default runner: in this process, one unit after the other."""
    for u in units:
        yield fn(u)


def executor_runner(executor: Any) -> Runner:
    """A runner that trains units through a :mod:`harness.runs.executors` executor (in-process or Dask): units run in
    parallel on workers, a unit that kills its worker or passes ``timeout`` comes back failed, the client writes."""

    def run(fn: Callable[[dict], dict], units: list[dict]) -> Iterator[dict]:
        gpu = lambda u: {"GPU": 1} if str(u.get("device", "cpu")) != "cpu" else None  # noqa: E731
        results = executor.map_unordered(fn, units, key=unit_key, resources=gpu)
        try:
            for r in results:
                if r.ok:
                    yield r.value
                else:
                    yield {
                        "key": unit_key(r.item),
                        "status": "failed",
                        "rows": [],
                        "summary": {},
                        "message": f"{r.kind}: {r.error}",
                        "seconds": 0.0,
                    }
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    return run


def identity(unit: dict[str, Any]) -> dict[str, Any]:
    """The identity columns shared by a unit's curves rows and its summary row."""
    decl = get_declaration(unit["estimator"])
    multi = "multi_sample_bound" in decl.requires
    wl = get_workload(unit["workload"])
    return {
        "suite": unit["suite"],
        "unit_key": unit_key(unit),
        "workload": unit["workload"],
        "workload_config": json.dumps(unit["config"], sort_keys=True),
        "estimator": unit["estimator"],
        "family": decl.family,
        "unbiased": decl.is_unbiased(unit["hyper"]),
        "backend": unit["backend"],
        "device": unit["device"],
        "dtype": unit["dtype"],
        "train_seed": unit["seed"],
        "lr": unit["lr"],
        "objective": f"iwae{unit['n_samples']}" if multi else "elbo",
        "n_samples": unit["n_samples"],
        "batch_size": unit["batch_size"],
        "distribution": wl.latent,
        "dim": int(wl.latent_shape(wl.resolve(unit["config"]))[0]),
        "train_steps": unit["steps"],
        **{f"h_{k}": v for k, v in unit["hyper"].items()},
    }


def unit_label(unit: dict[str, Any]) -> str:
    return (
        f"{unit['workload']} {unit['estimator']} seed={unit['seed']} lr={unit['lr']} {unit['backend']}:{unit['device']}"
    )


def run_training(
    suite: dict[str, Any],
    units: list[dict[str, Any]],
    out: Path,
    *,
    resume: bool = False,
    runner: Runner | None = None,
    log: Callable[[str], None] = print,
    suite_path: str = "<dict>",
    suite_text: str | None = None,
    cli_args: dict[str, Any] | None = None,
    stream: TextIO | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every unit not finished yet in ``out`` (through the one run writer); returns (curves, results)."""
    out = Path(out)
    check_cache()
    keys = [unit_key(u) for u in units]
    writer = RunWriter(
        out,
        RunPlan(
            kind="training",
            identity={"unit_keys": keys},
            meta={
                "suite": suite.get("name"),
                "suite_table": suite,
                "suite_path": suite_path,
                "suite_text": suite_text,
                "cli_args": cli_args or {},
                "units_total": len(units),
                "git_commit": git_commit(Path(__file__).parent),
                "machine": _machine(machine_info),
            },
            records=RECORDS,
        ),
        stream,
    )
    meta = writer.open(resume)
    udir = out / RECORDS
    done = {k for k, r in writer.records().items() if r.get("status") == "ok"}
    todo = [{**u, "state_path": str(udir / f"{k}.npz")} for u, k in zip(units, keys) if k not in done]
    if resume:
        log(f"resuming {out}: {len(done)} units done, {len(todo)} to go")
    labels = {k: unit_label(u) for u, k in zip(units, keys)}
    tables: dict[str, pd.DataFrame] = {}

    def finish() -> bool:
        records = writer.records()
        meta["units_done"] = sum(1 for r in records.values() if r.get("status") == "ok")
        meta["failed"] = [
            {"unit": labels.get(k, k), "error": str(r.get("message", "")).splitlines()[0] if r.get("message") else ""}
            for k, r in records.items()
            if r.get("status") == "failed"
        ]
        tables["curves"], tables["results"] = write_tables(out, units)
        return all(k in records for k in keys)

    with writer.running(finish, interrupts=(ExecutorError,)):
        udir.mkdir(parents=True, exist_ok=True)
        for i, res in enumerate((runner or sequential)(train_unit, todo), 1):
            writer.save_record(res["key"], res)
            log(
                f"[{i}/{len(todo)}] {res['key']} {res['status']} ({res['seconds']:.1f} s)"
                + (f": {res['message'].splitlines()[0]}" if res["status"] != "ok" else "")
            )
    return tables["curves"], tables["results"]


def _machine(info: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return info()
    except Exception as exc:  # environment details are informative, never fatal
        return {"error": str(exc)}


def _outcome(path: Path, status: str | None = None) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict):
        return None
    return rec if status is None or rec.get("status") == status else None


def write_tables(out: Path, units: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild ``curves.parquet`` and ``results.parquet`` from the finished units' outcome files."""
    curves, results = [], []
    for u in units:
        rec = _outcome(out / RECORDS / f"{unit_key(u)}.json", "ok")
        if rec is None:
            continue
        ident = identity(u)
        curves += [{**ident, **r} for r in rec["rows"]]
        results.append({"run_id": out.name, **ident, "param": "encoder", **rec["summary"]})
    cdf, rdf = pd.DataFrame(curves), pd.DataFrame(results)
    atomic_write_parquet(out / "curves.parquet", cdf)
    atomic_write_parquet(out / "results.parquet", rdf)
    return cdf, rdf


@dataclass
class TrainRequest:
    """A training run: the training suite file, where results go, how to resume, where units run."""

    suite: str | Path
    out: str | Path | None = None  # "" is refused (an unset variable in --out "$OUT")
    results_dir: Path = Path("results")
    resume: bool = False
    confirm: bool = False  # --yes: train a suite over the size limits (harness.training.limits)
    workers: int | None = None
    scheduler: str | None = None
    cli_args: dict[str, Any] = field(default_factory=dict)


def plan_training(req: TrainRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate the request and its suite (SuiteError / RunError on bad input; nothing is written)."""
    if req.resume and req.out is None:
        raise RunError("--resume needs --out RUN_DIR (the run to continue)")
    check_out(req.out)
    if req.workers is not None and req.scheduler is not None:
        raise RunError("--workers starts a local cluster and --scheduler connects to one: give only one")
    planned = load_train_suite(req.suite, confirmed=req.confirm)
    check_cache()
    return planned


def train_suite(
    req: TrainRequest,
    stream: TextIO | None = None,
    planned: tuple[dict, list[dict]] | None = None,
    log: Callable[[str], Any] | None = None,
) -> tuple[Path, pd.DataFrame, pd.DataFrame, int]:
    """Plan and run a training suite; returns (run directory, curves, results, number of units).  ``log`` receives
    one line per finished unit (default: written to ``stream``)."""
    stream = stream or sys.stderr
    suite, units = planned or plan_training(req)
    out = check_out(req.out)
    run_dir = out if out is not None else new_run_dir(Path(req.results_dir), suite_name(suite, req.suite))
    try:
        kw = {"preload": registering_modules(), "exclusive_timing": False} if req.workers else {}
        ex = make_executor(req.workers, req.scheduler, **kw)
    except ExecutorError as exc:
        raise RunError(f"--scheduler/--workers: {exc}") from None
    text = Path(req.suite).read_text(encoding="utf-8")
    local = req.workers is None and req.scheduler is None  # in this process: errors such as a full disk propagate
    with ex:
        curves, results = run_training(
            suite,
            units,
            run_dir,
            resume=req.resume,
            runner=sequential if local else executor_runner(ex),
            log=log or (lambda s: stream.write(s + "\n")),
            suite_path=str(req.suite),
            suite_text=text,
            cli_args=req.cli_args,
            stream=stream,
        )
    return run_dir, curves, results, len(units)
