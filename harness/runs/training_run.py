"""A training run directory: units through a runner (executor), state files, ``curves.parquet``, ``results.parquet``.

Layout of ``<run>/``: ``meta.json`` (suite, units, environment), ``units/<key>.npz`` (a unit's resumable state,
written only by the process training that unit), ``units/<key>.json`` (its outcome, written by this client when
the unit returns), ``curves.parquet`` (one row per unit × logged step) and ``results.parquet`` (one summary row
per finished unit), both rebuilt from the outcome files at the end.  Columns: results/README.md.

``runner(fn, units)`` yields ``fn(unit)`` for each unit dict in any order (default: in-process, in sequence);
an executor (e.g. Dask) passes its own, since :func:`harness.training.loop.train_unit` is a module-level
function of a JSON-able dict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from harness.files.atomic import atomic_write_json, atomic_write_parquet
from harness.registry import get_declaration
from harness.runs.machine import machine_info
from harness.training.loop import train_unit
from harness.training.spec import unit_key
from harness.workloads import get_workload

Runner = Callable[[Callable[[dict], dict], list[dict]], Iterable[dict]]
CURVE_ID = [
    "suite",
    "unit_key",
    "workload",
    "estimator",
    "backend",
    "device",
    "dtype",
    "train_seed",
    "lr",
    "objective",
    "n_samples",
    "batch_size",
]


def sequential(fn: Callable[[dict], dict], units: list[dict]) -> Iterator[dict]:
    """The default runner: in this process, one unit after the other."""
    for u in units:
        yield fn(u)


def executor_runner(executor: Any) -> Runner:
    """A runner that trains units through a :mod:`harness.runs.executors` executor (in-process or Dask): units run in
    parallel on workers, a unit that kills its worker or passes ``timeout`` comes back failed, the client writes."""

    def run(fn: Callable[[dict], dict], units: list[dict]) -> Iterator[dict]:
        gpu = lambda u: {"GPU": 1} if str(u.get("device", "cpu")) != "cpu" else None  # noqa: E731
        for r in executor.map_unordered(fn, units, key=unit_key, resources=gpu):
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


def run_training(
    suite: dict[str, Any],
    units: list[dict[str, Any]],
    out: Path,
    *,
    resume: bool = False,
    runner: Runner | None = None,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every unit not finished yet in ``out``; returns (curves, results)."""
    out = Path(out)
    if (out / "meta.json").exists() and not resume:
        raise FileExistsError(f"{out}: a run directory already exists; continue it with --resume")
    udir = out / "units"
    todo = []
    for u in units:
        k = unit_key(u)
        if not (resume and _outcome(udir / f"{k}.json", "ok")):
            todo.append({**u, "state_path": str(udir / f"{k}.npz")})
    meta = {
        "kind": "training",
        "suite": suite,
        "run_id": out.name,
        "units": len(units),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "environment": _env(),
    }
    atomic_write_json(out / "meta.json", meta)
    udir.mkdir(parents=True, exist_ok=True)
    for i, res in enumerate((runner or sequential)(train_unit, todo), 1):
        atomic_write_json(udir / f"{res['key']}.json", res)
        log(
            f"[{i}/{len(todo)}] {res['key']} {res['status']} ({res['seconds']:.1f} s)"
            + (f": {res['message'].splitlines()[0]}" if res["status"] != "ok" else "")
        )
    return write_tables(out, units)


def _outcome(path: Path, status: str | None = None) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if status is None or rec.get("status") == status else None


def _env() -> dict[str, Any]:
    try:
        return machine_info()
    except Exception as exc:  # environment details are informative, never fatal
        return {"error": str(exc)}


def write_tables(out: Path, units: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild ``curves.parquet`` and ``results.parquet`` from the finished units' outcome files."""
    curves, results = [], []
    for u in units:
        rec = _outcome(out / "units" / f"{unit_key(u)}.json", "ok")
        if rec is None:
            continue
        ident = identity(u)
        curves += [{**ident, **r} for r in rec["rows"]]
        results.append({"run_id": out.name, **ident, "param": "encoder", **rec["summary"]})
    cdf, rdf = pd.DataFrame(curves), pd.DataFrame(results)
    atomic_write_parquet(out / "curves.parquet", cdf)
    atomic_write_parquet(out / "results.parquet", rdf)
    return cdf, rdf
