"""Training suites: ``[[train]]`` tables → JSON-able training units (workload × estimator × seed × lr × backend × device).

A training suite is a TOML file with a ``[suite]`` table (``name``, ``description``, ``seed``) and one or more
``[[train]]`` tables (``stochgrad train SUITE``).  Every key of a ``[[train]]`` table with its default is in
:data:`TRAIN_KEYS`; list-valued sweep keys (``estimators``, ``seeds``, ``lr``, ``backends``, ``devices``) are
crossed.  Errors raise :class:`harness.suite.SuiteError` naming the file, the key and the valid choices (the CLI
prints them and exits 2 before anything is written).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from harness.suite import SuiteError, validate_hyper

TRAIN_BACKENDS = ("torch",)
TRAIN_KEYS: dict[str, Any] = {
    "workload": None,  # required: a registered workload name
    "config": {},  # workload configuration (model size etc.; its training keys lr/train_* are not used here)
    "estimators": None,  # required: names or fnmatch patterns of registered estimators
    "hyper": {},  # {estimator: {hyperparameter: value}}
    "seeds": [0],  # training seeds (init, minibatches, noise)
    "lr": [1e-3],  # Adam learning rates (encoder and decoder)
    "backends": ["torch"],
    "devices": ["cpu"],
    "dtype": "float64",
    "steps": 1000,
    "batch_size": 32,
    "n_samples": 2,  # L per example (K of the multi-sample bound for vimco / dreg / iwae_pathwise)
    "log_every": 50,  # a curves row (and a saved state) every k steps
    "ema_decay": 0.99,  # online gradient variance: EMAs of g and g² (DisARM uses 0.999)
    "val_size": 200,  # held-out ELBO on the first val_size validation examples (0: all)
    "val_samples": 1,  # samples per example of the held-out ELBO
    "test_samples": 100,  # K of the final importance-weighted bound on the test split
    "test_size": 0,  # test examples (0: all)
    "refit_every": 100,  # steps between refits of fitted control variates (REBAR/RELAX)
    "fixed_batch": False,  # train on one fixed minibatch (diagnostics: online variance without data noise)
}
SWEEP = ("estimators", "seeds", "lr", "backends", "devices")
POSITIVE = ("steps", "batch_size", "n_samples", "log_every", "val_samples", "test_samples", "refit_every")


def unit_key(unit: Mapping[str, Any]) -> str:
    """Identity hash of a training unit (everything but where its state lives)."""
    ident = {k: v for k, v in unit.items() if k not in ("state_path",)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
        if not isinstance(lr, int | float) or isinstance(lr, bool) or not lr > 0:
            raise _err(path, f"{w}.lr", f"must be positive numbers, got {lr!r}")


def _workload(path: str, w: str, t: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from harness.workloads import get_workload, workload_names
    from harness.workloads.base import WorkloadError

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


def applies(est: Any, wl: Any, n_samples: int) -> str:
    """Why estimator declaration ``est`` cannot train workload ``wl`` ("" if it can)."""
    if not est.applies_to(wl.latent):
        return f"does not apply to {wl.latent} latents"
    if "differentiable" in est.requires and not wl.differentiable:
        return f"needs a differentiable objective ({wl.name} is not)"
    if "separable" in est.requires or est.name == "enumeration":
        return "needs a separable objective (a workload's is not)"
    if est.oracle:
        return "is an oracle (needs the exact gradient)"
    if est.min_samples > n_samples:
        return f"needs n_samples >= {est.min_samples}"
    return ""


def _estimators(path: str, w: str, t: dict[str, Any], wl: Any) -> list[str]:
    from harness.registry import declarations

    decls = {d.name: d for d in declarations()}
    valid = sorted(n for n, d in decls.items() if not applies(d, wl, t["n_samples"]))
    out: list[str] = []
    for pat in _as_list(t["estimators"]):
        if not isinstance(pat, str):
            raise _err(path, f"{w}.estimators", f"must be names or patterns, got {pat!r}")
        names = sorted(fnmatch.filter(decls, pat))
        if not names:
            raise _err(path, f"{w}.estimators", f"unknown estimator {pat!r}; valid for {wl.name}: {valid}")
        ok = [n for n in names if not applies(decls[n], wl, t["n_samples"])]
        if not ok:
            why = applies(decls[names[0]], wl, t["n_samples"])
            raise _err(path, f"{w}.estimators", f"{names[0]!r} {why}; valid for {wl.name}: {valid}")
        out += [n for n in ok if n not in out]
    return out


def _hyper(path: str, w: str, t: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    from harness.registry import get_declaration

    if not isinstance(t["hyper"], Mapping):
        raise _err(path, f"{w}.hyper", f"must be a table of estimator tables, got {t['hyper']!r}")
    out = {}
    for est, h in t["hyper"].items():
        if est not in names:
            raise _err(path, f"{w}.hyper.{est}", f"not one of this table's estimators; valid: {names}")
        out[est] = validate_hyper(get_declaration(est), h, f"{w}.hyper.{est}", path)
    return out


def _devices(path: str, w: str, backend: str, devices: list[Any]) -> list[str]:
    from harness.backends import get_backend

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


def expand_table(path: str, w: str, table: Mapping[str, Any], suite: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One ``[[train]]`` table → unit dicts (validated)."""
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
                        units.append({"suite": suite.get("name", Path(path).stem), "workload": wl.name,
                                      "config": cfg, "estimator": est, "hyper": hyper.get(est, {}), "seed": seed,
                                      "lr": float(lr), "backend": backend, "device": dev, **scalars})  # fmt: skip
    return units


def load_train_suite(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(suite table, unit dicts) of a training suite file."""
    p = str(path)
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise _err(p, "file", "no such suite file") from None
    except tomllib.TOMLDecodeError as exc:
        raise _err(p, "toml", f"not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"suite", "train"})
    if unknown:
        raise _err(p, unknown[0], "unknown top-level key; valid: ['suite', 'train']")
    suite = data.get("suite", {})
    if not isinstance(suite, Mapping) or sorted(set(suite) - {"name", "description", "seed"}):
        raise _err(p, "suite", "must be a table with keys among ['description', 'name', 'seed']")
    tables = data.get("train")
    if not isinstance(tables, list) or not tables:
        raise _err(p, "train", "a training suite needs at least one [[train]] table")
    units = [u for i, t in enumerate(tables) for u in expand_table(p, f"train[{i}]", t, suite)]
    keys = [unit_key(u) for u in units]
    if len(set(keys)) != len(keys):
        raise _err(p, "train", "two [[train]] tables describe the same training run")
    return dict(suite), units
