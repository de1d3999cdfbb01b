"""Suite input rules beyond the key names: file reading, value types and ranges, run names, size limits.

Every rule raises ``SuiteError(path, key, message)`` before anything is written (docs/notes/hardening.md):

* the file must be a readable UTF-8 TOML file whose top level holds a ``[suite]`` table, ``[[sweep]]`` tables and
  optional ``[[exclude]]`` tables;
* runner options (``precision``, ``max_seconds``, ``max_memory``, ``timing_max_s``) are finite positive numbers,
  ``max_replicates`` and ``max_cells`` positive integers;
* ``replicates`` is an integer in [MIN_REPLICATES, max_replicates] (a variance needs two replicates; above the cap
  the precision loop would stop anyway);
* the run ``name`` is one plain path component, so the run directory stays inside the results directory;
* one replicate's sample ([L, *event]) and every parameter array fit in the memory budget (``max_memory``);
* a suite of more than MAX_CELLS cells or an estimated run time above MAX_ESTIMATE_H hours stops with the count
  and the estimate, unless ``--yes`` or a ``max_cells`` key at least the count is given; the count is taken from
  the sweep sizes before any problem is built or any cell is made.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from harness.measure.runner import DEFAULT_MAX_MEMORY

MIN_REPLICATES = 2
DEFAULT_MAX_REPLICATES = 2**20  # as harness.measure.runner's cap of the precision loop
MAX_CELLS = 20_000  # 20x the largest shipped suite (continuous.toml, 944 cells)
MAX_ESTIMATE_H = 24.0
# time model of the estimate: a fixed cost per cell (truth, setup, timing: 0.03 s numpy, 0.2 s torch measured on
# one CPU thread) plus a cost per sampled element R x L x event (40-90 ns measured for pathwise/score_function)
CELL_OVERHEAD_S = 0.05
SECONDS_PER_ELEMENT = 50e-9
NAME_RE = re.compile(r"^[^./\\\x00-\x1f][^/\\\x00-\x1f]{0,119}$")  # one path component, no leading dot
RUNNER_FLOATS = ("precision", "max_seconds", "max_memory", "timing_max_s")
RUNNER_INTS = ("max_replicates", "max_cells")


class SuiteError(ValueError):
    """Invalid suite input; the CLI prints it as ``error: FILE: KEY: message`` and exits with 2."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}")
        self.path, self.key, self.message = path, key, message


def as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else [v]


def check_keys(path: str, where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(table, Mapping):
        raise SuiteError(path, where, f"must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SuiteError(path, f"{where}.{unknown[0]}", f"unknown key; valid: {sorted(allowed)}")


def positive_ints(path: str, key: str, v: Any) -> list[int]:
    vals = as_list(v)
    if not vals:
        raise SuiteError(path, key, "must not be empty")
    for x in vals:
        if not isinstance(x, int) or isinstance(x, bool) or x < 1:
            raise SuiteError(path, key, f"must be a positive integer (or a list of them), got {x!r}")
    return vals


def strings(path: str, key: str, v: Any) -> list[str]:
    vals = as_list(v)
    if not vals or not all(isinstance(x, str) for x in vals):
        raise SuiteError(path, key, f"must be a string or a non-empty list of strings, got {v!r}")
    return vals


def table(path: str, key: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise SuiteError(path, key, f"must be a table, got {type(v).__name__} {v!r}")
    return dict(v)


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def check_runner_options(path: str, opts: Mapping[str, Any], where: str = "suite", error: Any = None) -> None:
    """Runner options: finite positive numbers (integers for max_replicates / max_cells)."""
    for k, v in opts.items():
        if k in RUNNER_INTS:
            if not is_int(v) or v < 1:
                raise error(path, f"{where}.{k}", f"must be a positive integer, got {v!r}")
        elif k in RUNNER_FLOATS and (not is_number(v) or not math.isfinite(v) or v <= 0):
            raise error(path, f"{where}.{k}", f"must be a finite positive number, got {v!r}")


def check_replicates(path: str, key: str, R: Any, cap: int, error: Any) -> int:
    if not is_int(R) or R < MIN_REPLICATES:
        raise error(path, key, f"must be an integer >= {MIN_REPLICATES} (a variance needs two replicates), got {R!r}")
    if cap < R:
        raise error(
            path, key, f"{R} replicates exceed the cap max_replicates = {cap}; raise max_replicates to allow it"
        )
    return R


def check_name(path: str, name: Any, error: Any) -> str:
    """The run name is one plain path component: the run directory stays inside the results directory."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in {".", ".."}:
        raise error(
            path,
            "suite.name",
            f"must be a plain name (one path component: no '/' or '\\', no control characters, no leading '.', "
            f"at most 120 characters), got {name!r}",
        )
    return name


def default_name(stem: str) -> str:
    """A run name from a file stem (or ``<dict>``): characters outside the plain-name set become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.+=,-]", "_", stem).strip("_.") or "suite"


EXCLUDE_INT_FIELDS = {"dim", "n_samples"}


def check_exclude(path: str, rules: Any, allowed: set[str], error: Any) -> list[Mapping[str, Any]]:
    """[[exclude]] tables: known keys; strings (fnmatch patterns) or lists of them, integers for dim/n_samples."""
    if not isinstance(rules, list):
        raise error(path, "exclude", f"must be [[exclude]] tables, got {type(rules).__name__}")
    for i, r in enumerate(rules):
        if not isinstance(r, Mapping):
            raise error(path, f"exclude[{i}]", f"must be a table, got {type(r).__name__}")
        unknown = sorted(set(r) - allowed)
        if unknown:
            raise error(path, f"exclude[{i}].{unknown[0]}", f"unknown key; valid: {sorted(allowed)}")
        for k, v in r.items():
            vals = list(v) if isinstance(v, list) else [v]
            want_int = k in EXCLUDE_INT_FIELDS
            ok = all(is_int(x) if want_int else isinstance(x, str) for x in vals) and vals
            if not ok:
                kind = "an integer or a list of integers" if want_int else "a string pattern or a list of them"
                raise error(path, f"exclude[{i}].{k}", f"must be {kind}, got {v!r}")
    return rules


def memory_budget(opts: Mapping[str, Any]) -> int:
    mem = opts.get("max_memory")
    return int(float(mem) * 2**20) if mem else DEFAULT_MAX_MEMORY


def check_param_size(
    path: str, key: str, dist: Any, dim: int, options: Mapping[str, Any], budget: int, error: Any
) -> None:
    """The distribution's parameter arrays at dimension ``dim`` fit in the memory budget (before allocating)."""
    opts = {**dist.options, **{k: v for k, v in options.items() if is_int(v)}}
    elements = sum(math.prod(dist.param_shape(n, dim, opts)) for n in dist.params)
    if elements * 8 > budget:
        raise error(
            path,
            key,
            f"dim {dim}: the {dist.name} parameters alone need {_mib(elements * 8)}, over the "
            f"memory budget of {_mib(budget)} (suite.max_memory, MiB)",
        )


def check_sample_size(path: str, key: str, L: int, event: int, itemsize: int, budget: int, error: Any) -> None:
    """One replicate's sample [L, *event] fits in the memory budget (an L-sample estimate cannot be split)."""
    need = L * event * itemsize
    if need > budget:
        raise error(
            path,
            key,
            f"L = {L} with {event} elements per draw needs {_mib(need)} for one replicate, over "
            f"the memory budget of {_mib(budget)} (suite.max_memory, MiB)",
        )


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB" if b < 2**40 else f"{b / 2**40:,.1f} TiB"


def estimate_seconds(cells: int, elements: float) -> float:
    """Estimated run time of ``cells`` cells drawing ``elements`` sample elements in total (see the constants)."""
    return cells * CELL_OVERHEAD_S + elements * SECONDS_PER_ELEMENT


def check_size(path: str, cells: int, elements: float, max_cells: int | None, confirmed: bool, error: Any) -> None:
    """Stop a huge suite before expanding it, with the count and the estimate."""
    if confirmed:
        return
    est = estimate_seconds(cells, elements)
    limit = max_cells if max_cells is not None else MAX_CELLS
    too_long = max_cells is None and est > MAX_ESTIMATE_H * 3600
    if cells > limit or too_long:
        why = f"over the limit of {limit:,} cells" if cells > limit else f"over {MAX_ESTIMATE_H:g} h"
        raise error(
            path,
            "suite",
            f"the suite expands to up to {cells:,} cells, estimated {fmt_hours(est)} of run time ({why}); nothing was "
            "expanded: narrow the sweeps, or confirm with --yes or a suite key max_cells >= the count",
        )


def fmt_hours(s: float) -> str:
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min"
