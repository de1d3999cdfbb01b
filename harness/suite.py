"""Suite files (TOML) -> validated, expanded list of Cells.

Format (see README "Suite format")::

    [suite]                       # name, description, seed, replicates, dtype, timing, precision
    name = "smoke"
    seed = 0
    replicates = 2000

    [[sweep]]                     # each sweep is a cartesian product; several sweeps are concatenated
    estimators = ["pathwise", "score_function*"]   # fnmatch patterns over registered names
    backends = ["numpy", "torch", "jax"]
    devices = ["cpu"]             # cpu | cuda[:N] | gpu[:N]  (cuda/gpu name the GPU for either library)
    n_samples = [1, 4, 16]
    hyper = { temperature = [0.1, 0.5] }           # swept for estimators declaring the hyperparameter
    problems = "examples"         # or a list of [[sweep.problems]] tables:
    [[sweep.problems]]
    distribution = "normal"
    params = { loc = 0.5, scale = 1.5 }            # scalars broadcast; lists give per-site values
    sweep_params = { scale = [0.5, 2.0] }          # optional scalar sweep of a parameter
    objective = ["quadratic", "cos"]               # a name or a list
    objective_params = { k = 0.0 }
    dims = [1, 10]
    options = { categories = 4 }

    [[exclude]]                   # drop cells matching every given field (fnmatch for strings)
    estimator = "score_function"
    dim = 1000

Capabilities decide what is expanded: an estimator that does not apply to a distribution, needs more
samples than L, or needs a differentiable objective is dropped and the drop is counted with its reason.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from harness.backends import BACKEND_NAMES, DTYPES
from harness.cells import Cell
from harness.problems import DISTRIBUTIONS, ProblemError, ProblemSpec, example_problems, get_objective
from harness.registry import Implementation, estimator_names, implementations

SUITE_KEYS = {
    "name",
    "description",
    "seed",
    "replicates",
    "dtype",
    "timing",
    "precision",
    "max_replicates",
    "max_seconds",
    "max_memory",
    "timing_max_s",
    "scheduler",  # where cells run (harness.executors): an existing Dask scheduler's address
    "workers",  # ... or a local cluster of this many worker processes
    "cell_timeout",  # seconds per cell, enforced when cells run on workers
    "exclusive_timing",  # workers hold timing phases under one cluster-wide lock (docs/notes/scale-out.md)
}
SWEEP_KEYS = {"estimators", "backends", "devices", "n_samples", "hyper", "problems", "replicates", "dtype", "workloads"}
PROBLEM_KEYS = {"distribution", "params", "sweep_params", "objective", "objective_params", "dims", "options"}
EXCLUDE_KEYS = {
    "estimator",
    "backend",
    "device",
    "distribution",
    "objective",
    "dim",
    "n_samples",
    "workload",
    "checkpoint",
}
DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|gpu(:\d+)?)$")


class SuiteError(ValueError):
    """Invalid suite input; the CLI prints it as ``error: FILE: KEY: message`` and exits with 2."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}")
        self.path, self.key, self.message = path, key, message


@dataclass
class Expansion:
    cells: list[Cell]
    dropped: Counter = field(default_factory=Counter)
    suite: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"expanded {len(self.cells)} cells"]
        if self.dropped:
            lines.append(f"dropped {sum(self.dropped.values())} combinations:")
            # "X does not apply to D" reasons are folded per estimator so the summary stays short
            folded: Counter = Counter()
            dists: dict[str, list[str]] = {}
            for why, n in self.dropped.items():
                est, sep, dist = why.partition(" does not apply to ")
                if sep:
                    folded[f"{est} does not apply to"] += n
                    dists.setdefault(est, []).append(dist)
                else:
                    folded[why] += n
            for why, n in folded.most_common():
                est = why.removesuffix(" does not apply to")
                if est != why:
                    why = f"{why} {', '.join(sorted(dists[est]))}"
                lines.append(f"  {n:6d}  {why}")
        return "\n".join(lines)


def estimator_applies(spec: Implementation, problem: ProblemSpec) -> tuple[bool, str]:
    if hasattr(problem, "workload"):  # a model workload (harness.workloads)
        from harness.workloads.measure import applies

        return applies(spec, problem)
    if not spec.applies_to(problem.distribution):
        return False, f"{spec.name} does not apply to {problem.distribution}"
    obj = get_objective(problem.objective)
    if "differentiable" in spec.requires and not obj.differentiable:
        return False, f"{spec.name} needs a differentiable objective ({problem.objective} is not)"
    if "separable" in spec.requires and not obj.separable:
        return False, f"{spec.name} needs a separable objective"
    if "multi_sample_bound" in spec.requires and not getattr(obj, "multi_sample_bound", False):
        return False, f"{spec.name} estimates a multi-sample bound's gradient ({problem.objective} has none)"
    return True, ""


def map_device(backend: str, device: str) -> str | None:
    """Suite device names -> the backend's own (cuda and gpu are synonyms); None: not for this backend."""
    plat, _, idx = device.partition(":")
    if plat == "cpu":
        return "cpu"
    if backend == "numpy":
        return None
    name = {"torch": "cuda", "jax": "gpu"}[backend]
    return f"{name}:{idx}" if idx else name


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else [v]


def _check_keys(path: str, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(table, Mapping):
        raise SuiteError(path, where, f"must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SuiteError(path, f"{where}.{unknown[0]}", f"unknown key; valid: {sorted(allowed)}")


def _pos_ints(path: str, key: str, v: Any) -> list[int]:
    vals = _list(v)
    if not vals:
        raise SuiteError(path, key, "must not be empty")
    for x in vals:
        if not isinstance(x, int) or isinstance(x, bool) or x < 1:
            raise SuiteError(path, key, f"must be a positive integer (or a list of them), got {x!r}")
    return vals


def _strings(path: str, key: str, v: Any) -> list[str]:
    vals = _list(v)
    if not vals or not all(isinstance(x, str) for x in vals):
        raise SuiteError(path, key, f"must be a string or a non-empty list of strings, got {v!r}")
    return vals


def _problems(path: str, where: str, raw: Any) -> list[ProblemSpec]:
    if raw == "examples":
        return example_problems()
    if not isinstance(raw, list) or not raw:
        raise SuiteError(path, where, 'must be "examples" or a non-empty list of [[sweep.problems]] tables')
    out: list[ProblemSpec] = []
    for i, t in enumerate(raw):
        w = f"{where}[{i}]"
        _check_keys(path, w, t, PROBLEM_KEYS)
        dist = t.get("distribution")
        if dist not in DISTRIBUTIONS:
            raise SuiteError(
                path, f"{w}.distribution", f"unknown distribution {dist!r}; valid: {sorted(DISTRIBUTIONS)}"
            )
        objectives = _strings(path, f"{w}.objective", t.get("objective", "quadratic"))
        dims = _pos_ints(path, f"{w}.dims", t.get("dims", 1))
        params = dict(t.get("params", {}))
        sweeps = t.get("sweep_params", {})
        _check_keys(
            path, f"{w}.sweep_params", sweeps, set(DISTRIBUTIONS[dist].params) | set(DISTRIBUTIONS[dist].aliases)
        )
        names = list(sweeps)
        for combo in itertools.product(*[_list(sweeps[n]) for n in names]) if names else [()]:
            ps = {**params, **dict(zip(names, combo))}
            for obj, dim in itertools.product(objectives, dims):
                spec = ProblemSpec(dist, obj, dim, ps, dict(t.get("objective_params", {})), dict(t.get("options", {})))
                try:
                    spec.build()
                except ProblemError as exc:
                    raise SuiteError(path, f"{w}.{exc.key}", str(exc).split(": ", 1)[1]) from None
                out.append(spec)
    return out


def validate_hyper(spec: Implementation, hyper: Mapping[str, Any], where: str = "hyper", path: str = "<api>") -> dict:
    """Hyperparameter values checked against the estimator's declaration (unknown names and bad values raise)."""
    for k, v in hyper.items():
        if k not in spec.hyperparameters:
            raise SuiteError(
                path, f"{where}.{k}", f"unknown hyperparameter of {spec.name}; valid: {sorted(spec.hyperparameters)}"
            )
        msg = spec.hyperparameters[k].validate(v)
        if msg:
            raise SuiteError(path, f"{where}.{k}", f"{v!r} {msg} (estimator {spec.name})")
    return dict(hyper)


def _workloads(path: str, where: str, raw: Any) -> list[Any]:
    """[[sweep.workloads]] tables -> WorkloadSpecs (harness.workloads.suite_keys)."""
    from harness.workloads import WorkloadError
    from harness.workloads.suite_keys import parse_workloads

    try:
        return parse_workloads(raw)
    except WorkloadError as exc:
        raise SuiteError(path, f"{where}{exc.key}", str(exc).split(": ", 1)[1]) from None


def _hyper_grid(path: str, where: str, spec: Implementation, hyper: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = [k for k in hyper if k in spec.hyperparameters]
    grid = []
    for combo in itertools.product(*[_list(hyper[k]) for k in names]):
        grid.append(validate_hyper(spec, dict(zip(names, combo)), f"{where}.hyper", path))
    return grid


def _excluded(cell: Cell, rules: list[Mapping[str, Any]]) -> bool:
    fields = {
        "estimator": cell.estimator,
        "backend": cell.backend,
        "device": cell.device,
        "distribution": cell.problem.distribution,
        "objective": cell.problem.objective,
        "dim": cell.problem.dim,
        "n_samples": cell.n_samples,
        "workload": getattr(cell.problem, "workload", ""),
        "checkpoint": getattr(cell.problem, "checkpoint", ""),
    }
    for r in rules:
        if all(
            (fnmatch.fnmatch(str(fields[k]), v) if isinstance(v, str) else fields[k] in _list(v)) for k, v in r.items()
        ):
            return True
    return False


def _executor_keys(path: str, meta: Mapping[str, Any]) -> None:
    """The [suite] keys choosing where cells run: scheduler (an address), workers (>= 1), cell_timeout (> 0),
    exclusive_timing (bool)."""
    if "scheduler" in meta and "workers" in meta:
        raise SuiteError(path, "suite.scheduler", "give scheduler (an existing cluster) or workers (a local one)")
    sch = meta.get("scheduler")
    if sch is not None and (not isinstance(sch, str) or ":" not in sch):
        raise SuiteError(path, "suite.scheduler", f'must be an address such as "tcp://HOST:8786", got {sch!r}')
    w = meta.get("workers")
    if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w < 1):
        raise SuiteError(path, "suite.workers", f"must be a positive integer, got {w!r}")
    t = meta.get("cell_timeout")
    if t is not None and (not isinstance(t, int | float) or isinstance(t, bool) or t <= 0):
        raise SuiteError(path, "suite.cell_timeout", f"must be a positive number of seconds, got {t!r}")
    if not isinstance(meta.get("exclusive_timing", False), bool):
        raise SuiteError(path, "suite.exclusive_timing", f"must be true or false, got {meta['exclusive_timing']!r}")


def load_suite(path: str | Path) -> dict[str, Any]:
    p = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SuiteError(p, "file", "no such suite file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(p, "toml", f"not valid TOML: {exc}") from None
    allowed_top = {"suite", "sweep", "exclude"}
    unknown = sorted(set(data) - allowed_top)
    if unknown:
        raise SuiteError(p, unknown[0], f"unknown top-level key; valid: {sorted(allowed_top)}")
    return data


def expand(
    path: str | Path,
    data: Mapping[str, Any] | None = None,
    *,
    backends: list[str] | None = None,
    devices: list[str] | None = None,
    replicates: int | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Expansion:
    """Validate a suite and expand it into cells; CLI overrides take precedence over the file."""
    p = str(path)
    data = load_suite(path) if data is None else data
    meta = dict(data.get("suite", {}))
    _check_keys(p, "suite", meta, SUITE_KEYS)
    name = meta.get("name", Path(p).stem)
    seed = seed if seed is not None else meta.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SuiteError(p, "suite.seed", f"must be a non-negative integer, got {seed!r}")
    R_default = replicates if replicates is not None else meta.get("replicates", 2000)
    _pos_ints(p, "suite.replicates" if replicates is None else "--replicates", R_default)
    dtype_default = dtype or meta.get("dtype", "float64")
    if dtype_default not in DTYPES:
        raise SuiteError(p, "suite.dtype", f"unknown dtype {dtype_default!r}; valid: {list(DTYPES)}")
    opts = {
        k: meta[k] for k in ("precision", "max_replicates", "max_seconds", "max_memory", "timing_max_s") if k in meta
    }
    for k, v in opts.items():
        if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
            raise SuiteError(p, f"suite.{k}", f"must be a positive number, got {v!r}")
    opts.update({k: v for k, v in (options or {}).items() if v is not None})
    _executor_keys(p, meta)
    timing = meta.get("timing", True)
    if not isinstance(timing, bool):
        raise SuiteError(p, "suite.timing", f"must be true or false, got {timing!r}")
    sweeps = data.get("sweep", [])
    if not isinstance(sweeps, list) or not sweeps:
        raise SuiteError(p, "sweep", "at least one [[sweep]] table is required")
    rules = data.get("exclude", [])
    for i, r in enumerate(rules):
        _check_keys(p, f"exclude[{i}]", r, EXCLUDE_KEYS)
    known = estimator_names()
    cells: list[Cell] = []
    dropped: Counter = Counter()
    for si, sw in enumerate(sweeps):
        w = f"sweep[{si}]"
        _check_keys(p, w, sw, SWEEP_KEYS)
        pats = _strings(p, f"{w}.estimators", sw.get("estimators", "*"))
        for pat in pats:
            if not fnmatch.filter(known, pat):
                raise SuiteError(p, f"{w}.estimators", f"unknown estimator {pat!r}; valid: {known}")
        bks = _strings(p, f"{w}.backends", sw.get("backends", list(BACKEND_NAMES)))
        for b in bks:
            if b not in BACKEND_NAMES:
                raise SuiteError(p, f"{w}.backends", f"unknown backend {b!r}; valid: {list(BACKEND_NAMES)}")
        if backends:
            bks = [b for b in bks if b in backends]
        devs = devices or _strings(p, f"{w}.devices", sw.get("devices", ["cpu"]))
        for d in devs:
            if not DEVICE_RE.match(d):
                raise SuiteError(
                    p,
                    f"{w}.devices" if not devices else "--device",
                    f"unknown device {d!r}; valid: cpu, cuda, cuda:N, gpu, gpu:N",
                )
        Ls = _pos_ints(p, f"{w}.n_samples", sw.get("n_samples", [1]))
        R = replicates or sw.get("replicates", R_default)
        _pos_ints(p, f"{w}.replicates", R)
        dt = dtype or sw.get("dtype", dtype_default)
        if dt not in DTYPES:
            raise SuiteError(p, f"{w}.dtype", f"unknown dtype {dt!r}; valid: {list(DTYPES)}")
        hyper = sw.get("hyper", {})
        _check_keys(p, f"{w}.hyper", hyper, {k for s in implementations() for k in s.hyperparameters})
        problems = _problems(p, f"{w}.problems", sw.get("problems", "examples")) if "workloads" not in sw or "problems" in sw else []
        problems += _workloads(p, f"{w}.workloads", sw["workloads"]) if "workloads" in sw else []
        specs = [s for s in implementations() if s.backend in bks and any(fnmatch.fnmatch(s.name, q) for q in pats)]
        for spec in specs:
            grid = _hyper_grid(p, w, spec, hyper)
            for prob in problems:
                ok, why = estimator_applies(spec, prob)
                for dev in devs:
                    bdev = map_device(spec.backend, dev)
                    for L in Ls:
                        for h in grid:
                            if not ok:
                                dropped[why] += 1
                                continue
                            if bdev is None:
                                dropped[f"{spec.backend} runs on cpu only (device {dev})"] += 1
                                continue
                            if spec.min_samples > L:
                                dropped[f"{spec.name} needs L >= {spec.min_samples}"] += 1
                                continue
                            cell = Cell(spec.name, spec.backend, bdev, prob, L, int(R), h, name, seed, dt, timing, opts)
                            if _excluded(cell, rules):
                                dropped["excluded by [[exclude]]"] += 1
                                continue
                            cells.append(cell)
    unique = list({c.key(): c for c in cells}.values())
    if len(unique) < len(cells):
        dropped["duplicate cell (same identity in two sweeps)"] += len(cells) - len(unique)
    return Expansion(unique, dropped, {"name": name, "seed": seed, **meta})
