"""Benchmark (not an asv benchmark, not a test): wall time of the race (harness.stats.race) to its decision vs
measuring the full grid at the default suite's precision, on a few problems (NumPy backend, CPU).

    python -m suites.benchmarks.race_vs_grid [--problems NAME ...] [--budget 120] [--seed 0] [--json FILE]

Arms: the applicable unbiased, non-oracle estimators of each problem at their default hyperparameters plus a small
grid (``score_function_cv`` n_cv, ``measure_valued`` coupling, ``rsvi`` boost, ``rebar``/``relax`` temperature).
First calls: every arm's first call (REBAR/RELAX fit their hyperparameters there, cached in-process) runs before
both approaches, timed apart ("first calls": paid by either).
Grid: every arm timed per call (R = 1, timing_max_s = 0.5, the runner's default) and measured as
``stochgrad run suites/default.toml`` measures a cell (R = 2000 minimum, precision 0.1, at most 200000 replicates
or 60 s); its decision is the smallest variance × time per call among arms with a valid variance interval
(variance: mean over all coordinates, as the race's).  That decision is a point estimate, so the grid's own 95%
interval of its runner-up's factor is printed.  A grid that decides with the race's confidence must give every
arm the cost the race gave its most sampled arm: that time (timing + draws) is computed from each arm's draw rate
measured in the grid run.  Race: every arm draws through the same runner (``harness.measure.runner.estimate``,
fresh seed per draw), timed quickly at its first draw (timing_max_s = 0.05) and as the grid times it when it
survives to its second draw (the engine reads the cost of every draw; refining only at the 4th draw saved time
but, on a loaded machine, let a quick per-call time that drifted eliminate an arm within 6% of the best), raced at equal time with the default
:class:`~harness.stats.race.RaceConfig` and a budget; its time includes all of its timing.  Per-call times on a
loaded machine drift between measurements, so the two approaches can disagree on arms within a few %.
Results: docs/notes/recommend.md ("Race vs grid").
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.measure import runner
from harness.measure.runner import MeasureRequest, estimate
from harness.measure.timing import TimingConfig
from harness.problems import Problem, ProblemSpec
from harness.registry import ensure_loaded, get_declaration, get_estimator
from harness.stats.metrics import efficiency_interval, ratio_interval, replicate_variances, variance_interval
from harness.stats.race import Arm, Cost, Draw, RaceConfig, race

GRID = {"R": 2000, "precision": 0.1, "max_replicates": 200_000, "max_seconds": 60.0}  # suites/default.toml
TIMING = TimingConfig(max_time_s=0.5)  # the runner's default timing_max_s
QUICK = TimingConfig(max_time_s=0.05, min_sample_s=0.002)  # the race's first look at an arm's per-call time
REFINE_AT = 2  # the race times an arm as the grid does at its 2nd draw (arms out in the pilot never pay it)
HYPER_GRID: dict[str, list[dict[str, Any]]] = {
    "score_function_cv": [{}, {"n_cv": 100}],
    "measure_valued": [{}, {"coupling": False}],
    "rsvi": [{}, {"boost": 1}, {"boost": 8}],
    "rebar": [{}, {"temperature": 0.1, "fit_temperature": False}],
    "relax": [{}, {"temperature": 0.1, "fit_temperature": False}],
}
# name: (problem, L, estimators).  Bernoulli and categorical objectives are separable, so enumeration (and on the
# Bernoulli toy measure_valued and the delta method) are exact: they would win at the pilot and make the decision
# trivial, so they are left out to race the others.
PROBLEMS: dict[str, tuple[ProblemSpec, int, list[str]]] = {
    "bernoulli_toy-D100-L10": (
        ProblemSpec("bernoulli", "bernoulli_toy", 100, {"probs": 0.3}),
        10,
        ["score_function", "score_function_rloo", "score_function_cv", "arm", "disarm", "rebar", "relax"],
    ),
    "bernoulli_toy-D1000-L100": (
        ProblemSpec("bernoulli", "bernoulli_toy", 1000, {"probs": 0.3}),
        100,
        ["score_function", "score_function_rloo", "score_function_cv", "arm", "disarm", "rebar", "relax"],
    ),
    "categorical-K4-D20-L10": (
        ProblemSpec("categorical", "categorical_target", 20, {"logits": [0.5, -0.5, 0.0, 1.0]}),
        10,
        ["score_function", "score_function_rloo", "score_function_cv", "arsm", "measure_valued", "rebar", "relax"],
    ),
    "normal-cos-D200-L10": (
        ProblemSpec("normal", "cos", 200, {"loc": 0.5, "scale": 1.5}),
        10,
        ["pathwise", "score_function", "score_function_rloo", "score_function_cv", "measure_valued"],
    ),
    "gamma-cos-D10-L10": (
        ProblemSpec("gamma", "cos", 10, {"concentration": 0.5, "rate": 1.0}),
        10,
        ["implicit_reparam", "rsvi", "grg", "score_function", "score_function_rloo", "score_function_cv"],
    ),
}


def arm_points(names: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, estimator, hyper) of every arm: default hyperparameters plus the small grid, unbiased, non-oracle."""
    out = []
    for n in names:
        d = get_declaration(n)
        for h in HYPER_GRID.get(n, [{}]):
            if d.oracle or not d.is_unbiased(h):
                continue
            label = n + ("[" + ",".join(f"{k}={v}" for k, v in h.items()) + "]" if h else "")
            out.append((label, n, h))
    return out


def request(problem: Problem, L: int, name: str, hyper: dict[str, Any], R: int, seed: int, **kw: Any) -> MeasureRequest:
    return MeasureRequest(get_estimator(name, "numpy"), problem, L=L, R=R, seed=seed, hyper=hyper, **kw)


def timed(problem: Problem, L: int, name: str, hyper: dict[str, Any], cfg: TimingConfig) -> Cost:
    t = runner.time_estimator(request(problem, L, name, hyper, 1, 0), cfg)
    return Cost(t.time_median_s, t.time_iqr_s, t.time_samples)


@dataclass
class RunnerSampler:
    """An arm drawing through the one runner with a fresh seed per draw; timed quickly at its first draw and as
    the grid times a cell at its REFINE_AT-th (only arms that survive that long pay the full timing)."""

    problem: Problem
    L: int
    name: str
    hyper: dict[str, Any]
    seed: int
    cost: Cost | None = None
    calls: int = 0
    seeds: Any = field(default=None)

    def draw(self, n: int) -> Draw:
        if self.seeds is None:
            self.seeds = np.random.SeedSequence(self.seed)
        self.calls += 1
        if self.cost is None or self.calls == REFINE_AT:
            self.cost = timed(self.problem, self.L, self.name, self.hyper, QUICK if self.calls == 1 else TIMING)
        seed = int(self.seeds.spawn(1)[0].generate_state(1)[0])
        G, _ = estimate(request(self.problem, self.L, self.name, self.hyper, n, seed))
        return Draw(G, self.cost)


def first_calls(problem: Problem, L: int, points: list) -> float:
    t0 = time.perf_counter()
    for _, name, h in points:
        estimate(request(problem, L, name, h, 1, 0))
    return time.perf_counter() - t0


def grid_one(problem: Problem, L: int, points: list, seed: int) -> dict[str, Any]:
    """Time and measure every arm at the default suite's precision; pick the smallest variance × time."""
    t0 = time.perf_counter()
    costs = {label: timed(problem, L, name, h, TIMING) for label, name, h in points}
    t_timing = time.perf_counter() - t0
    arms = {}
    for i, (label, name, h) in enumerate(points):
        req = request(problem, L, name, h, GRID["R"], seed * 1000 + i, precision=GRID["precision"])
        G, info = estimate(req.with_(max_replicates=GRID["max_replicates"], max_seconds=GRID["max_seconds"]))
        flat = np.concatenate([g.reshape(g.shape[0], -1) for g in G.values()], axis=1)
        flat = flat[np.all(np.isfinite(flat), axis=1)]
        vi = variance_interval(replicate_variances(flat))
        c = costs[label]
        eff = efficiency_interval(vi["variance"], vi["low"], vi["high"], c.seconds, c.seconds_iqr, c.seconds_samples)
        arms[label] = {
            "R": int(flat.shape[0]),
            "variance": vi["variance"],
            "valid": vi["valid"],
            "efficiency": tuple(float(x) for x in eff),
            "capped": info["precision_cap_reason"],
            "draw_s_per_replicate": info["estimate_seconds"] / max(int(flat.shape[0]), 1),
        }
    valid = {k: a["efficiency"][0] for k, a in arms.items() if a["valid"]}
    order = sorted(valid, key=valid.__getitem__)
    factor = None
    if len(order) > 1:  # the grid's own 95% interval of the runner-up's factor: is its decision supported?
        factor = [float(x) for x in ratio_interval(*arms[order[1]]["efficiency"], *arms[order[0]]["efficiency"])]
    return {
        "seconds": time.perf_counter() - t0,
        "timing_s": t_timing,
        "pick": order[0] if order else None,
        "runner_up": order[1:2],
        "factor": factor,
        "arms": arms,
        "costs": costs,
    }


def grid_same_precision(grid: dict[str, Any], race_out: dict[str, Any]) -> float:
    """Seconds a grid needs to time every arm and give it the cost (seconds per call × replicates) the race gave
    its most sampled arm — the precision of the race's decision — at each arm's draw rate measured in the grid."""
    costs = grid["costs"]
    q = max(n * costs[k].seconds for k, n in race_out["replicates"].items())
    draws = sum(q / costs[k].seconds * a["draw_s_per_replicate"] for k, a in grid["arms"].items())
    return grid["timing_s"] + draws


def race_one(problem: Problem, L: int, points: list, seed: int, budget: float, cfg: RaceConfig) -> dict:
    t0 = time.perf_counter()
    arms = [
        Arm(label, RunnerSampler(problem, L, name, h, seed * 1000 + 500 + i), info={"hyper": h})
        for i, (label, name, h) in enumerate(points)
    ]
    res = race(arms, budget_s=budget, config=cfg)
    return {
        "seconds": time.perf_counter() - t0,
        "pick": res.pick,
        "decided": res.decided,
        "stop": res.stop_reason,
        "rounds": len(res.rounds),
        "eliminated": res.eliminated,
        "ties": res.ties,
        "close": res.close,
        "replicates": {k: a["n_replicates"] for k, a in res.arms.items()},
        "result": res.to_dict(),
        "text": res.text(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", nargs="*", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--budget", type=float, default=120.0, help="race budget in seconds (default 120)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-within-tolerance", action="store_true", help="RaceConfig(stop_within_tolerance=False)")
    ap.add_argument("--json", help="write the results to this file")
    a = ap.parse_args(argv)
    ensure_loaded()
    out = {}
    for name in a.problems:
        spec, L, names = PROBLEMS[name]
        problem = spec.build()
        points = arm_points(names)
        t_first = first_calls(problem, L, points)
        g = grid_one(problem, L, points, a.seed)
        r = race_one(problem, L, points, a.seed, a.budget, RaceConfig(stop_within_tolerance=not a.no_within_tolerance))
        same = g["pick"] == r["pick"] or g["pick"] in r["ties"] + r["close"]
        g_same = grid_same_precision(g, r)
        res = {"first_calls_s": t_first, "grid": g, "race": r, "same_decision": same, "grid_same_precision_s": g_same}
        res["speedup_vs_default_grid"] = g["seconds"] / r["seconds"]
        res["speedup_vs_same_precision_grid"] = g_same / r["seconds"]
        out[name] = res
        f = g["factor"]
        ftxt = f"runner-up {g['runner_up'][0]} ×{f[0]:.3g} [{f[1]:.3g}, {f[2]:.3g}] (95%)" if f else "no runner-up"
        print(
            f"{name} ({len(points)} arms): first calls {t_first:.1f} s (either approach)\n"
            f"  race {r['seconds']:.1f} s -> {r['pick']} ({r['stop']}, {r['rounds']} rounds)\n"
            f"  grid at precision {GRID['precision']}: {g['seconds']:.1f} s (timing {g['timing_s']:.1f} s) -> "
            f"{g['pick']}, {ftxt}; same decision: {same}; race x{res['speedup_vs_default_grid']:.1f} faster\n"
            f"  grid at the race's precision (draws computed from measured rates): {g_same:.1f} s; "
            f"race x{res['speedup_vs_same_precision_grid']:.1f} faster",
            flush=True,
        )
        print("  grid arms:", {k: (v["R"], f"{v['efficiency'][0]:.3g}", v["valid"]) for k, v in g["arms"].items()})
        print("  race:", r["text"].replace("\n", "\n        "), flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
