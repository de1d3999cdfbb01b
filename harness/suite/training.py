"""Training suites: ``[[train]]`` tables → JSON-able training units (workload × estimator × seed × lr × backend × device).

A training suite is a TOML file with a ``[suite]`` table (``name``, ``description``, ``seed``) and one or more
``[[train]]`` tables (``stochgrad train SUITE``).  Every key of a ``[[train]]`` table with its default is in
:data:`harness.training.spec.TRAIN_KEYS`; list-valued sweep keys (``estimators``, ``seeds``, ``lr``, ``backends``,
``devices``) are crossed.  Which estimators can train a workload is the registry's matcher on the training step's
traits (:func:`harness.training.spec.step_traits`).  Errors raise :class:`harness.suite.limits.SuiteError` naming
the file, the key and the valid choices (the CLI prints them and exits 2 before anything is written).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.backends import get_backend
from harness.registry import Estimator, applies, declarations, get_declaration
from harness.suite.expand import read_toml, validate_hyper
from harness.suite.limits import SuiteError, check_name, default_name
from harness.training import limits
from harness.training.spec import POSITIVE, SWEEP, TRAIN_BACKENDS, TRAIN_KEYS, step_traits, unit_key
from harness.workloads import WorkloadError, get_workload, workload_names
from harness.workloads.base import Workload


def _err(path: str, key: str, msg: str) -> SuiteError:
    return SuiteError(path, key, msg)


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else [v]


def _check_scalars(path: str, w: str, t: dict[str, Any]) -> None:
    for k in POSITIVE:
        v = t[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _err(path, f"{w}.{k}", f"must be a positive integer, got {v!r}")
    for k in ("val_size", "test_size"):
        if not isinstance(t[k], int) or isinstance(t[k], bool) or t[k] < 0:
            raise _err(path, f"{w}.{k}", f"must be a non-negative integer (0: all), got {t[k]!r}")
    if not isinstance(t["ema_decay"], int | float) or not 0 < t["ema_decay"] < 1:
        raise _err(path, f"{w}.ema_decay", f"must be in (0, 1), got {t['ema_decay']!r}")
    if t["dtype"] not in ("float64", "float32"):
        raise _err(path, f"{w}.dtype", f"unknown dtype {t['dtype']!r}; valid: ['float32', 'float64']")
    if not isinstance(t["fixed_batch"], bool):
        raise _err(path, f"{w}.fixed_batch", f"must be true or false, got {t['fixed_batch']!r}")
    for s in t["seeds"]:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise _err(path, f"{w}.seeds", f"must be non-negative integers, got {s!r}")
    for lr in t["lr"]:
        if not isinstance(lr, int | float) or isinstance(lr, bool) or not lr > 0 or not math.isfinite(lr):
            raise _err(path, f"{w}.lr", f"must be finite positive numbers, got {lr!r}")


def _workload(path: str, w: str, t: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    try:
        wl = get_workload(t["workload"])
    except (KeyError, ValueError):
        raise _err(path, f"{w}.workload", f"unknown workload {t['workload']!r}; valid: {workload_names()}") from None
    if not isinstance(t["config"], Mapping):
        raise _err(path, f"{w}.config", f"must be a table, got {t['config']!r}")
    try:
        cfg = wl.resolve(t["config"])
        n_train = len(next(iter(wl.dataset(cfg)["train"].values())))  # data files are checked here, before training
    except WorkloadError as exc:
        raise _err(path, f"{w}.{exc.key}", str(exc).split(": ", 1)[1]) from None
    if t["batch_size"] > n_train:
        raise _err(path, f"{w}.batch_size", f"must be <= {n_train} (the train split), got {t['batch_size']}")
    return wl, cfg


def _estimators(path: str, w: str, t: dict[str, Any], wl: Workload) -> list[str]:
    """The estimators a table names that can train ``wl`` (the registry's matcher on the step's traits)."""
    decls: dict[str, Estimator] = {d.name: d for d in declarations()}
    traits, L = step_traits(wl), t["n_samples"]
    valid = sorted(n for n, d in decls.items() if applies(d, traits, n_samples=L)[0])
    out: list[str] = []
    for pat in _as_list(t["estimators"]):
        if not isinstance(pat, str):
            raise _err(path, f"{w}.estimators", f"must be names or patterns, got {pat!r}")
        names = sorted(fnmatch.filter(decls, pat))
        if not names:
            raise _err(path, f"{w}.estimators", f"unknown estimator {pat!r}; valid for {wl.name}: {valid}")
        ok = [n for n in names if applies(decls[n], traits, n_samples=L)[0]]
        if not ok:
            why = applies(decls[names[0]], traits, n_samples=L)[1]
            raise _err(path, f"{w}.estimators", f"{why}; valid for {wl.name}: {valid}")
        out += [n for n in ok if n not in out]
    return out


def _hyper(path: str, w: str, t: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(t["hyper"], Mapping):
        raise _err(path, f"{w}.hyper", f"must be a table of estimator tables, got {t['hyper']!r}")
    out = {}
    for est, h in t["hyper"].items():
        if est not in names:
            raise _err(path, f"{w}.hyper.{est}", f"not one of this table's estimators; valid: {names}")
        out[est] = validate_hyper(get_declaration(est), h, f"{w}.hyper.{est}", path)
    return out


def _devices(path: str, w: str, backend: str, devices: list[Any]) -> list[str]:
    B = get_backend(backend)
    why = B.unavailable_reason()
    if why:
        raise _err(path, f"{w}.backends", f"{backend}: {why}")
    out = []
    for d in devices:
        dev = "cuda" + str(d)[4:] if str(d).startswith("gpu") else str(d)
        msg = B.device_error(dev)
        if msg:
            raise _err(path, f"{w}.devices", f"{d!r}: {msg}; available: {B.devices()}")
        out.append(dev)
    return out


def _limits(path: str, w: str, t: dict[str, Any], wl: Any, cfg: dict[str, Any], confirmed: bool) -> None:
    """Memory of one unit before anything is allocated (time is checked for the whole suite)."""
    try:
        limits.check_unit_memory(f"{w}.batch_size", wl, cfg, t["batch_size"], t["n_samples"], t["dtype"], confirmed)
    except limits.LimitError as exc:
        raise _err(path, exc.key, exc.message) from None


def expand_table(
    path: str, w: str, table: Mapping[str, Any], suite: Mapping[str, Any], confirmed: bool = False
) -> list[dict[str, Any]]:
    """One ``[[train]]`` table → unit dicts (validated; ``confirmed``: over the size limits, ``--yes``)."""
    if not isinstance(table, Mapping):
        raise _err(path, w, f"must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(TRAIN_KEYS))
    if unknown:
        raise _err(path, f"{w}.{unknown[0]}", f"unknown key; valid: {sorted(TRAIN_KEYS)}")
    for req in ("workload", "estimators"):
        if req not in table:
            raise _err(path, f"{w}.{req}", "required key is missing")
    t = {**TRAIN_KEYS, **table}
    for k in SWEEP:
        t[k] = _as_list(t[k])
        if not t[k]:
            raise _err(path, f"{w}.{k}", "must not be empty")
    _check_scalars(path, w, t)
    wl, cfg = _workload(path, w, t)
    _limits(path, w, t, wl, cfg, confirmed)
    names = _estimators(path, w, t, wl)
    hyper = _hyper(path, w, t, names)
    bad = [b for b in t["backends"] if b not in TRAIN_BACKENDS]
    if bad:
        raise _err(path, f"{w}.backends", f"training runs support {list(TRAIN_BACKENDS)}, got {bad[0]!r}")
    units = []
    scalars = {k: t[k] for k in TRAIN_KEYS if k not in SWEEP and k not in ("workload", "config", "hyper")}
    for backend in t["backends"]:
        if backend not in wl.backends:
            raise _err(path, f"{w}.backends", f"{wl.name} runs on {list(wl.backends)} only")
        for dev in _devices(path, w, backend, t["devices"]):
            for est in names:
                for lr in t["lr"]:
                    for seed in t["seeds"]:
                        units.append(
                            {
                                "suite": suite_name(suite, path),
                                "workload": wl.name,
                                "config": cfg,
                                "estimator": est,
                                "hyper": hyper.get(est, {}),
                                "seed": seed,
                                "lr": float(lr),
                                "backend": backend,
                                "device": dev,
                                **scalars,
                            }
                        )
    return units


def suite_name(suite: Mapping[str, Any], path: str | Path) -> str:
    """The run name: ``[suite] name`` (checked at load: one plain path component), else a plain name from the
    file name."""
    name = suite.get("name")
    return name if isinstance(name, str) else default_name(Path(str(path)).stem)


def _suite_table(p: str, suite: Any) -> dict[str, Any]:
    if not isinstance(suite, Mapping) or sorted(set(suite) - {"name", "description", "seed"}):
        raise _err(p, "suite", "must be a table with keys among ['description', 'name', 'seed']")
    if "name" in suite:
        check_name(p, suite["name"], SuiteError)
    if not isinstance(suite.get("description", ""), str):
        raise _err(p, "suite.description", f"must be a string, got {suite['description']!r}")
    seed = suite.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise _err(p, "suite.seed", f"must be a non-negative integer, got {seed!r}")
    return dict(suite)


def estimate_seconds(units: list[dict[str, Any]]) -> float:
    """Estimated training time of ``units`` (harness.training.limits' time model)."""
    total = 0.0
    cache: dict[str, tuple[int, int, int]] = {}
    for u in units:
        ck = json.dumps([u["workload"], u["config"]], sort_keys=True, default=str)
        if ck not in cache:
            wl = get_workload(u["workload"])
            cfg = wl.resolve(u["config"])
            data = wl.dataset(cfg)
            n_val, n_test = (len(next(iter(data[s].values()))) for s in ("val", "test"))
            cache[ck] = (limits.widths(wl, cfg)[1], n_val, n_test)
        width, n_val, n_test = cache[ck]
        total += limits.unit_seconds(u, width, n_val, n_test)
    return total


def load_train_suite(path: str | Path, confirmed: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(suite table, unit dicts) of a training suite file; over the size limits (harness.training.limits) it is
    refused unless ``confirmed`` (``--yes``)."""
    p = str(path)
    data = read_toml(path)
    unknown = sorted(set(data) - {"suite", "train"})
    if unknown:
        raise _err(p, unknown[0], "unknown top-level key; valid: ['suite', 'train']")
    suite = _suite_table(p, data.get("suite", {}))
    tables = data.get("train")
    if not isinstance(tables, list) or not tables:
        raise _err(p, "train", "a training suite needs at least one [[train]] table")
    units = [u for i, t in enumerate(tables) for u in expand_table(p, f"train[{i}]", t, suite, confirmed)]
    keys = [unit_key(u) for u in units]
    if len(set(keys)) != len(keys):
        raise _err(p, "train", "two [[train]] tables describe the same training run")
    try:
        limits.check_time("train", estimate_seconds(units), f"the suite ({len(units)} units)", confirmed)
    except limits.LimitError as exc:
        raise _err(p, exc.key, exc.message) from None
    return suite, units
