"""Suite files (TOML) -> validated, expanded list of Cells.

Format (docs/suites.md)::

    [suite]                       # name, description, seed, replicates, dtype, timing, precision, rank_by
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

Capabilities decide what is expanded: the registry's one matcher (:func:`harness.registry.applies`) reads each
estimator's declaration against each target's traits; an estimator that does not apply to a distribution, needs
more samples than L, or needs a differentiable objective is dropped and the drop is counted with its reason.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import re
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from harness.backends import BACKEND_NAMES, DTYPES
from harness.measure.cells import Cell
from harness.problems import ProblemSpec
from harness.registry import Implementation, applies, estimator_names, implementations
from harness.results.ranking import rank_by_error
from harness.suite import limits as lim
from harness.suite.limits import SuiteError, as_list, check_keys, positive_ints, strings, table
from harness.suite.problems import RawProblem, build_problems, problem_tables
from harness.suite.workloads import parse_workloads
from harness.workloads import WorkloadError

MAX_SUITE_BYTES = 4 * 2**20  # a suite file is text a person writes: 4 MiB is far beyond any real one

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
    "scheduler",  # where cells run (harness.runs.executors): an existing Dask scheduler's address
    "workers",  # ... or a local cluster of this many worker processes
    "cell_timeout",  # seconds per cell, enforced when cells run on workers
    "exclusive_timing",  # workers hold timing phases under one cluster-wide lock (docs/notes/scale-out.md)
    "max_cells",
    "rank_by",  # what the report's "best" is measured by (harness.results.ranking): time | evals | samples
}
SWEEP_KEYS = {"estimators", "backends", "devices", "n_samples", "hyper", "problems", "replicates", "dtype", "workloads"}
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


def map_device(backend: str, device: str) -> str | None:
    """Suite device names -> the backend's own (cuda and gpu are synonyms); None: not for this backend."""
    plat, _, idx = device.partition(":")
    if plat == "cpu":
        return "cpu"
    if backend == "numpy":
        return None
    name = {"torch": "cuda", "jax": "gpu"}[backend]
    return f"{name}:{idx}" if idx else name


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


def _workloads(path: str, where: str, raw: Any, confirmed: bool = False) -> list[Any]:
    """[[sweep.workloads]] tables -> WorkloadSpecs (harness.suite.workloads); checkpoints within the training
    limits unless ``confirmed``."""
    try:
        return parse_workloads(raw, confirmed)
    except WorkloadError as exc:
        raise SuiteError(path, f"{where}{exc.key}", str(exc).split(": ", 1)[1]) from None


def _hyper_grid(path: str, where: str, spec: Implementation, hyper: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = [k for k in hyper if k in spec.hyperparameters]
    grid = []
    for combo in itertools.product(*[as_list(hyper[k]) for k in names]):
        grid.append(validate_hyper(spec, dict(zip(names, combo)), f"{where}.hyper", path))
    return grid


def _excluded(cell: Cell, rules: list[Mapping[str, Any]]) -> bool:
    fields = {
        **dict.fromkeys(EXCLUDE_KEYS, ""),  # a key the target does not have matches nothing but "*"
        **cell.target.fields(),
        "estimator": cell.estimator,
        "backend": cell.backend,
        "device": cell.device,
        "n_samples": cell.n_samples,
    }
    for r in rules:
        if all(
            (fnmatch.fnmatch(str(fields[k]), v) if isinstance(v, str) else fields[k] in as_list(v))
            for k, v in r.items()
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


def read_toml(path: str | Path) -> dict[str, Any]:
    """A suite file's TOML (any kind of suite): unreadable, non-UTF-8 or non-TOML files raise SuiteError."""
    p = str(path)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise SuiteError(p, "file", "is a directory, not a suite file")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero would block or never end
            raise SuiteError(p, "file", f"is a {_file_kind(st.st_mode)}, not a regular file; give a suite file")
        if st.st_size > MAX_SUITE_BYTES:
            raise SuiteError(p, "file", f"{st.st_size} bytes; a suite file is at most {MAX_SUITE_BYTES // 2**20} MiB")
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SuiteError(p, "file", "no such suite file") from None
    except IsADirectoryError:
        raise SuiteError(p, "file", "is a directory, not a suite file") from None
    except OSError as exc:
        raise SuiteError(p, "file", f"cannot read the suite file: {exc.strerror or exc}") from None
    if raw[:3] == b"\xef\xbb\xbf":
        raise SuiteError(p, "file", "starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without a BOM")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw:
        raise SuiteError(p, "file", "not UTF-8 text (UTF-16 or binary); TOML files are UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(p, "file", f"not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(p, "toml", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise SuiteError(p, "toml", "nested too deeply for a suite (arrays or tables inside each other)") from None


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in (
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return word
    return "special file"


def load_suite(path: str | Path) -> dict[str, Any]:
    """Read and parse a suite file; unreadable, non-UTF-8 or non-TOML files and bad top-level types raise."""
    p = str(path)
    data = read_toml(path)
    allowed_top = {"suite", "sweep", "exclude"}
    unknown = sorted(set(data) - allowed_top)
    if unknown:
        raise SuiteError(p, unknown[0], f"unknown top-level key; valid: {sorted(allowed_top)}")
    return data


@dataclass
class _SweepPlan:
    """One validated [[sweep]] before its problems are built: enough to count its cells cheaply."""

    where: str
    specs: list[Implementation]
    grids: dict[tuple[str, str], list[dict[str, Any]]]
    devs: list[str]
    Ls: list[int]
    R: int
    dtype: str
    raws: list[Any]

    def count(self) -> tuple[int, float]:
        """(cells, sample elements) upper bound: capability drops counted, exclusions and duplicates not."""
        cells, elements = 0, 0.0
        for spec in self.specs:
            g = len(self.grids[(spec.name, spec.backend)])
            devs = sum(1 for d in self.devs if map_device(spec.backend, d) is not None)
            Ls = [L for L in self.Ls if spec.min_samples <= L]
            for r in self.raws:
                if isinstance(r, RawProblem):
                    probe = [(ProblemSpec(r.dist, o, 1), r.size() // len(r.objectives)) for o in r.objectives]
                    per_el = r.elements() / max(r.size(), 1)
                else:
                    probe, per_el = [(r, 1)], float(getattr(r, "dim", 1))
                for ps, n in probe:
                    if isinstance(ps, ProblemSpec) and not applies(spec, ps.traits())[0]:
                        continue
                    k = n * g * devs * len(Ls)
                    cells += k
                    elements += n * g * devs * sum(Ls) * self.R * per_el
        return cells, elements


def _plan_sweep(p: str, si: int, sw: Any, ctx: dict[str, Any]) -> _SweepPlan:
    w = f"sweep[{si}]"
    check_keys(p, w, sw, SWEEP_KEYS)
    known = ctx["known"]
    pats = strings(p, f"{w}.estimators", sw.get("estimators", "*"))
    for pat in pats:
        if not fnmatch.filter(known, pat):
            raise SuiteError(p, f"{w}.estimators", f"unknown estimator {pat!r}; valid: {known}")
    bks = strings(p, f"{w}.backends", sw.get("backends", list(BACKEND_NAMES)))
    for b in bks:
        if b not in BACKEND_NAMES:
            raise SuiteError(p, f"{w}.backends", f"unknown backend {b!r}; valid: {list(BACKEND_NAMES)}")
    if ctx["backends"]:
        bks = [b for b in bks if b in ctx["backends"]]
    devs = ctx["devices"] or strings(p, f"{w}.devices", sw.get("devices", ["cpu"]))
    for d in devs:
        if not DEVICE_RE.match(d):
            raise SuiteError(
                p,
                f"{w}.devices" if not ctx["devices"] else "--device",
                f"unknown device {d!r}; valid: cpu, cuda, cuda:N, gpu, gpu:N",
            )
    Ls = positive_ints(p, f"{w}.n_samples", sw.get("n_samples", [1]))
    if ctx["replicates"] is not None:
        R = ctx["replicates"]
    else:
        R = lim.check_replicates(p, f"{w}.replicates", sw.get("replicates", ctx["R"]), ctx["cap"], SuiteError)
    dt = ctx["dtype"] or sw.get("dtype", ctx["dtype_default"])
    if dt not in DTYPES:
        raise SuiteError(p, f"{w}.dtype", f"unknown dtype {dt!r}; valid: {list(DTYPES)}")
    hyper = sw.get("hyper", {})
    check_keys(p, f"{w}.hyper", hyper, {k for s in implementations() for k in s.hyperparameters})
    raws: list[Any] = []
    if "workloads" not in sw or "problems" in sw:
        sizes = (Ls, np.dtype(dt).itemsize, ctx["budget"])
        raws += problem_tables(p, f"{w}.problems", sw.get("problems", "examples"), sizes)
    raws += _workloads(p, f"{w}.workloads", sw["workloads"], ctx.get("confirmed", False)) if "workloads" in sw else []
    specs = [s for s in implementations() if s.backend in bks and any(fnmatch.fnmatch(s.name, q) for q in pats)]
    grids = {(s.name, s.backend): _hyper_grid(p, w, s, hyper) for s in specs}
    return _SweepPlan(w, specs, grids, devs, Ls, int(R), dt, raws)


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
    confirmed: bool = False,
) -> Expansion:
    """Validate a suite and expand it into cells; CLI overrides take precedence over the file.

    The sweeps are validated and counted first; a suite over the size limits (harness.suite.limits) stops with
    its count and estimated run time before any problem is built, unless ``confirmed`` (``--yes``).
    """
    p = str(path)
    data = load_suite(path) if data is None else data
    if not isinstance(data, Mapping):
        raise SuiteError(p, "suite", f"a suite must be a table, got {type(data).__name__}")
    meta = table(p, "suite", data.get("suite", {}))
    check_keys(p, "suite", meta, SUITE_KEYS)
    name = lim.check_name(p, meta["name"], SuiteError) if "name" in meta else lim.default_name(Path(p).stem)
    if not isinstance(meta.get("description", ""), str):
        raise SuiteError(p, "suite.description", f"must be a string, got {meta['description']!r}")
    seed = seed if seed is not None else meta.get("seed", 0)
    if not lim.is_int(seed) or seed < 0:
        raise SuiteError(p, "suite.seed", f"must be a non-negative integer, got {seed!r}")
    opts = {k: meta[k] for k in (*lim.RUNNER_FLOATS, *lim.RUNNER_INTS) if k in meta}
    lim.check_runner_options(p, opts, "suite", SuiteError)
    max_cells = opts.pop("max_cells", None)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    lim.check_runner_options(p, {k: v for k, v in given.items() if k != "precision"}, "option", SuiteError)
    opts.update(given)
    cap = int(opts.get("max_replicates") or max(lim.DEFAULT_MAX_REPLICATES, 1))
    R_default = replicates if replicates is not None else meta.get("replicates", 2000)
    lim.check_replicates(p, "suite.replicates" if replicates is None else "--replicates", R_default, cap, SuiteError)
    dtype_default = dtype or meta.get("dtype", "float64")
    if dtype_default not in DTYPES:
        raise SuiteError(p, "suite.dtype", f"unknown dtype {dtype_default!r}; valid: {list(DTYPES)}")
    _executor_keys(p, meta)
    if "rank_by" in meta and (msg := rank_by_error(meta["rank_by"])) is not None:
        raise SuiteError(p, "suite.rank_by", msg)
    timing = meta.get("timing", True)
    if not isinstance(timing, bool):
        raise SuiteError(p, "suite.timing", f"must be true or false, got {timing!r}")
    sweeps = data.get("sweep", [])
    if not isinstance(sweeps, list) or not sweeps:
        raise SuiteError(p, "sweep", "at least one [[sweep]] table is required")
    rules = lim.check_exclude(p, data.get("exclude", []), EXCLUDE_KEYS, SuiteError)
    ctx = {
        "known": estimator_names(),
        "backends": backends,
        "devices": devices,
        "replicates": replicates,
        "R": R_default,
        "cap": cap,
        "dtype": dtype,
        "dtype_default": dtype_default,
        "budget": lim.memory_budget(opts),
        "confirmed": confirmed,
    }
    plans = [_plan_sweep(p, si, sw, ctx) for si, sw in enumerate(sweeps)]
    counts = [pl.count() for pl in plans]
    lim.check_size(p, sum(c for c, _ in counts), sum(e for _, e in counts), max_cells, confirmed, SuiteError)
    cells: list[Cell] = []
    dropped: Counter = Counter()
    for pl in plans:
        problems = build_problems(p, pl.raws)
        for spec in pl.specs:
            grid = pl.grids[(spec.name, spec.backend)]
            for prob in problems:
                traits = prob.traits()
                ok, why = applies(spec, traits)
                for dev in pl.devs:
                    bdev = map_device(spec.backend, dev)
                    for L in pl.Ls:
                        ok_L, why_L = applies(spec, traits, n_samples=L) if ok else (ok, why)
                        for h in grid:
                            if not ok:
                                dropped[why] += 1
                                continue
                            if bdev is None:
                                dropped[f"{spec.backend} runs on cpu only (device {dev})"] += 1
                                continue
                            if not ok_L:
                                dropped[why_L] += 1
                                continue
                            cell = Cell(
                                spec.name, spec.backend, bdev, prob, L, pl.R, h, name, seed, pl.dtype, timing, opts
                            )
                            if _excluded(cell, rules):
                                dropped["excluded by [[exclude]]"] += 1
                                continue
                            cells.append(cell)
    unique = list({c.key(): c for c in cells}.values())
    if len(unique) < len(cells):
        dropped["duplicate cell (same identity in two sweeps)"] += len(cells) - len(unique)
    return Expansion(unique, dropped, {"name": name, "seed": seed, **meta})
