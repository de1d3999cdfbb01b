"""[[sweep.problems]] tables: validated and sized without building (for the cell count and the memory rule),
then built into ProblemSpecs (each one's Problem is constructed once, which validates it)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.problems import DISTRIBUTIONS, OBJECTIVES, ProblemError, ProblemSpec, example_problems
from harness.suite import limits as lim
from harness.suite.limits import SuiteError, as_list, check_keys, positive_ints, strings, table

PROBLEM_KEYS = {"distribution", "params", "sweep_params", "objective", "objective_params", "dims", "options"}


@dataclass
class RawProblem:
    """A validated [[sweep.problems]] table, not yet built (its size is known without building)."""

    where: str
    dist: str
    objectives: list[str]
    dims: list[int]
    params: dict[str, Any]
    sweeps: dict[str, list[Any]]
    objective_params: dict[str, Any]
    options: dict[str, Any]

    def size(self) -> int:
        n = len(self.objectives) * len(self.dims)
        for v in self.sweeps.values():
            n *= len(v)
        return n

    def elements(self) -> float:
        """Sample elements per draw summed over instances (dim x categories), for the run-time estimate."""
        k = int(self.options.get("categories", DISTRIBUTIONS[self.dist].options.get("categories", 1)) or 1)
        return self.size() / len(self.dims) * sum(d * k for d in self.dims)


def problem_tables(path: str, where: str, raw: Any, sizes: tuple[list[int], int, int]) -> list[Any]:
    """Validated problem tables (not built); ``sizes`` = (n_samples, dtype itemsize, memory budget) for the
    memory rule, checked here so that a huge dim or L is refused before anything is allocated."""
    if raw == "examples":
        examples = example_problems()
        for ex in examples:
            _check_memory(path, where, DISTRIBUTIONS[ex.distribution], [ex.dim], dict(ex.options), sizes)
        return examples
    if not isinstance(raw, list) or not raw:
        raise SuiteError(path, where, 'must be "examples" or a non-empty list of [[sweep.problems]] tables')
    out: list[RawProblem] = []
    for i, t in enumerate(raw):
        w = f"{where}[{i}]"
        check_keys(path, w, t, PROBLEM_KEYS)
        dist = t.get("distribution")
        if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
            raise SuiteError(
                path, f"{w}.distribution", f"unknown distribution {dist!r}; valid: {sorted(DISTRIBUTIONS)}"
            )
        objectives = strings(path, f"{w}.objective", t.get("objective", "quadratic"))
        for o in objectives:
            if o not in OBJECTIVES:
                raise SuiteError(path, f"{w}.objective", f"unknown objective {o!r}; valid: {sorted(OBJECTIVES)}")
        dims = positive_ints(path, f"{w}.dims", t.get("dims", 1))
        params = table(path, f"{w}.params", t.get("params", {}))
        sweeps = table(path, f"{w}.sweep_params", t.get("sweep_params", {}))
        check_keys(
            path, f"{w}.sweep_params", sweeps, set(DISTRIBUTIONS[dist].params) | set(DISTRIBUTIONS[dist].aliases)
        )
        for n, v in sweeps.items():
            if not as_list(v):
                raise SuiteError(path, f"{w}.sweep_params.{n}", "must not be empty")
        oparams = table(path, f"{w}.objective_params", t.get("objective_params", {}))
        options = table(path, f"{w}.options", t.get("options", {}))
        _check_memory(path, w, DISTRIBUTIONS[dist], dims, options, sizes)
        out.append(
            RawProblem(w, dist, objectives, dims, params, {n: as_list(v) for n, v in sweeps.items()}, oparams, options)
        )
    return out


def _check_memory(
    path: str, w: str, dist: Any, dims: list[int], options: dict[str, Any], sizes: tuple[list[int], int, int]
) -> None:
    Ls, itemsize, budget = sizes
    opts = {**dist.options, **{k: v for k, v in options.items() if lim.is_int(v) and v > 0}}
    for dim in dims:
        lim.check_param_size(path, f"{w}.dims", dist, dim, opts, budget, SuiteError)
        event = int(np.prod(dist.event_shape(dim, opts)))
        key = f"{w.split('.problems')[0]}.n_samples" if event * itemsize <= budget else f"{w}.dims"
        lim.check_sample_size(path, key, max(Ls), event, itemsize, budget, SuiteError)


def build_problems(path: str, raws: list[Any]) -> list[Any]:
    """Build (and so validate) every problem instance of the validated tables; examples and workloads pass."""
    out: list[Any] = []
    for r in raws:
        if not isinstance(r, RawProblem):  # a shipped example or a model workload
            out.append(r)
            continue
        names = list(r.sweeps)
        for combo in itertools.product(*[r.sweeps[n] for n in names]):
            ps = {**r.params, **dict(zip(names, combo))}
            for obj, dim in itertools.product(r.objectives, r.dims):
                spec = ProblemSpec(r.dist, obj, dim, ps, dict(r.objective_params), dict(r.options))
                try:
                    spec.build()
                except ProblemError as exc:
                    raise SuiteError(path, f"{r.where}.{exc.key}", str(exc).split(": ", 1)[1]) from None
                out.append(spec)
    return out
