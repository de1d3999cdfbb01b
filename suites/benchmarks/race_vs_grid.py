"""Benchmark (not an asv benchmark, not a test): wall time of `stochgrad recommend`'s race to its decision vs measuring
the full grid, on problems, model workloads and a hyperparameter grid (NumPy backend, CPU, float64).

    STOCHGRAD_CACHE=... python -m suites.benchmarks.race_vs_grid [--targets NAME ...] [--budget 60] [--seed 0]
        [--json FILE]

Race: :func:`harness.runs.recommend_run.recommend_one` — exactly what ``stochgrad recommend TARGET [--grid]`` does
(every applicable estimator, or the listed ones; first calls, quick timing, rounds, re-timing), at equal time.
Its wall time includes its first calls (REBAR/RELAX's fitted temperatures, compilation), shown apart.

Grid: then, in the same process (so the fits are cached: the grid's own first calls are ~0 s and the race's are
charged to both), every arm the race raced is timed as a suite cell (R = 1, ``timing_max_s = 0.05``: the default
and workload suites') and measured as ``stochgrad run`` measures a cell: a problem as suites/default.toml does
(R = 2000 minimum, precision 0.1, at most 200000 replicates or 60 s), a workload as suites/workloads.toml does
(R = 1000).  Its decision: the smallest variance × time per call among unbiased arms with a valid variance interval,
with its own 95% interval of the runner-up's factor (a point estimate: is it supported?).

The same decision: the grid that decides with the race's confidence must give *every* arm the cost (replicates ×
seconds per call) the race gave its most sampled arm, and time every arm as long as the race timed its longest
timed arm (re-timing included) — a grid cannot know in advance which arms are close.  Its time is computed from
each arm's draw rate and timing measured in the grid run ("grid at the race's confidence").

Factors: grid seconds / race seconds, both with the first calls (what a user waits for) and without them (the
race's own work).  Results: docs/notes/recommend.md ("Race vs grid").
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from typing import Any

import numpy as np

from harness.measure import runner
from harness.measure import timing as timing_mod
from harness.problems import ProblemSpec
from harness.runs import recommend_run as rr
from harness.stats.metrics import efficiency_interval, ratio_interval, replicate_variances, variance_interval

GRID_TIMING = timing_mod.TimingConfig(max_time_s=0.05)  # suites/default.toml and suites/workloads.toml
PROBLEM_GRID = {"R": 2000, "precision": 0.1, "max_replicates": 200_000, "max_seconds": 60.0}  # suites/default.toml
WORKLOAD_R = 1000  # suites/workloads.toml
BERN_EST = ["score_function", "score_function_rloo", "score_function_cv", "arm", "disarm", "rebar", "relax"]
# name: (target, L, estimators (None: every applicable one), --grid).  Bernoulli and categorical objectives are
# separable, so enumeration (and on the Bernoulli toy measure_valued and the delta method) are exact there: they
# would win at the pilot and make the decision trivial, so the toy problems race the others.
TARGETS: dict[str, tuple[Any, int, list[str] | None, bool]] = {
    "bernoulli_toy-D100-L10": (ProblemSpec("bernoulli", "bernoulli_toy", 100, {"probs": 0.3}), 10, BERN_EST, False),
    "categorical-K4-D20-L10": (
        ProblemSpec("categorical", "categorical_target", 20, {"logits": [0.5, -0.5, 0.0, 1.0]}),
        10,
        ["score_function", "score_function_rloo", "score_function_cv", "arsm", "measure_valued", "rebar", "relax"],
        False,
    ),
    "normal-cos-D200-L10": (ProblemSpec("normal", "cos", 200, {"loc": 0.5, "scale": 1.5}), 10, None, False),
    "gamma-cos-D10-L10": (ProblemSpec("gamma", "cos", 10, {"concentration": 0.5, "rate": 1.0}), 10, None, False),
    "vae_bernoulli-D10@1000": (("vae_bernoulli", {"latent_dim": 10}, 1000), 2, None, False),
    "vae_gaussian@1000": (("vae_gaussian", {}, 1000), 2, None, False),
    "vae_bernoulli-D10@1000 --grid": (("vae_bernoulli", {"latent_dim": 10}, 1000), 2, None, True),
    "gamma-cos-D10-L10 --grid": (ProblemSpec("gamma", "cos", 10, {"concentration": 0.5, "rate": 1.0}), 10, None, True),
    "bernoulli_toy-D1000-L100": (ProblemSpec("bernoulli", "bernoulli_toy", 1000, {"probs": 0.3}), 100, BERN_EST, False),
    # DisARM's latent size (D = 200) on the shipped digits, untrained weights (no checkpoint to train): estimates of
    # 1-100 ms, where measuring every arm to the grid's R is what costs
    "vae_bernoulli-D200@0": (("vae_bernoulli", {"latent_dim": 200}, 0), 2, None, False),
}
SLOW = ("bernoulli_toy-D1000-L100", "vae_bernoulli-D200@0")  # their grids alone take ~4-12 min
DEFAULT = [n for n in TARGETS if n not in SLOW]


def target_of(name: str) -> rr.RecommendTarget:
    spec, L, _, _ = TARGETS[name]
    if isinstance(spec, tuple):
        spec = rr.workload_target(spec[0], spec[1], spec[2])
    return rr.RecommendTarget(spec, L, "numpy")


def grid_one(t: rr.RecommendTarget, answer: dict[str, Any], grid: bool, names: list[str] | None, seed: int) -> dict:
    """Time and measure every arm the race raced, as a suite cell; pick the smallest variance × time."""
    points = {p.label: p for p in rr.arm_points(t, names, grid)[0]}
    raced = [points[k] for k, a in answer["race"]["arms"].items() if a["status"] != "dropped" or a["n_replicates"]]
    built = t.target.build()
    workload = t.kind == "workload"
    t0 = time.perf_counter()
    for p in raced:  # first calls (cached fits: ~0 s after the race; reported)
        runner.estimate_target(runner.MeasureRequest(p.impl, built, L=t.n_samples, R=1, hyper=dict(p.hyper)), built)
    first_s = time.perf_counter() - t0
    arms: dict[str, dict[str, Any]] = {}
    timing_s = draw_s = 0.0
    for i, p in enumerate(raced):
        req = runner.MeasureRequest(p.impl, built, L=t.n_samples, R=1, seed=seed * 1000 + i, hyper=dict(p.hyper))
        t1 = time.perf_counter()
        tm = runner.time_parts(req, built.parts(req.seed), GRID_TIMING)
        t2 = time.perf_counter()
        if workload:
            G, info = runner.estimate_target(req.with_(R=WORKLOAD_R), built)
        else:
            G, info = runner.estimate_target(
                req.with_(
                    R=PROBLEM_GRID["R"],
                    precision=PROBLEM_GRID["precision"],
                    max_replicates=PROBLEM_GRID["max_replicates"],
                    max_seconds=PROBLEM_GRID["max_seconds"],
                ),
                built,
            )
        t3 = time.perf_counter()
        timing_s, draw_s = timing_s + t2 - t1, draw_s + t3 - t2
        flat = np.concatenate([np.asarray(g).reshape(np.shape(g)[0], -1) for g in G.values()], axis=1)
        flat = flat[np.all(np.isfinite(flat), axis=1)]
        vi = variance_interval(replicate_variances(flat))
        eff = efficiency_interval(
            vi["variance"], vi["low"], vi["high"], tm.time_median_s, tm.time_iqr_s, tm.time_samples
        )
        arms[p.label] = {
            "unbiased": p.unbiased,
            "R": int(flat.shape[0]),
            "variance": vi["variance"],
            "valid": bool(vi["valid"]),
            "seconds": tm.time_median_s,
            "efficiency": tuple(float(x) for x in eff),
            "timing_wall_s": t2 - t1,
            "draw_s_per_replicate": (t3 - t2) / max(int(flat.shape[0]), 1),
        }
    valid = {k: a["efficiency"][0] for k, a in arms.items() if a["valid"] and a["unbiased"]}
    order = sorted(valid, key=valid.__getitem__)
    factor = None
    if len(order) > 1:  # the grid's own 95% interval of the runner-up's factor: is its decision supported?
        factor = [float(x) for x in ratio_interval(*arms[order[1]]["efficiency"], *arms[order[0]]["efficiency"])]
    return {
        "first_calls_s": first_s,
        "timing_s": timing_s,
        "draws_s": draw_s,
        "seconds": timing_s + draw_s,
        "pick": order[0] if order else None,
        "runner_up": order[1] if len(order) > 1 else None,
        "factor": factor,
        "arms": arms,
    }


def grid_same_confidence(g: dict[str, Any], answer: dict[str, Any]) -> dict[str, float]:
    """Seconds of a grid that gives every arm the cost (replicates × seconds per call) the race gave its most sampled
    arm and times every arm as long as the race timed its longest-timed arm, at the rates measured in the grid."""
    race_arms = answer["race"]["arms"]
    q = max(a["n_replicates"] * (a["cost"] or {}).get("seconds", 0.0) for a in race_arms.values())
    t_race = max((a["cost"] or {}).get("timing_s", 0.0) for a in race_arms.values())
    draws = sum(q / a["seconds"] * a["draw_s_per_replicate"] for a in g["arms"].values() if a["seconds"] > 0)
    timing = sum(max(a["timing_wall_s"], t_race) for a in g["arms"].values())
    return {
        "seconds": draws + timing,
        "draws_s": draws,
        "timing_s": timing,
        "cost_per_arm_s": q,
        "timing_per_arm_s": t_race,
    }


def run_one(name: str, budget: float, seed: int) -> dict[str, Any]:
    _, _, names, grid = TARGETS[name]
    t = target_of(name)
    a = rr.recommend_one(t, budget_s=budget, estimators=names, grid=grid, seed=seed, stream=io.StringIO())
    r = a["race"]
    g = grid_one(t, a, grid, names, seed)
    same = grid_same_confidence(g, a)
    first = a["first_calls_s"]
    race_s, race_own = a["seconds"], a["seconds"] - first
    out = {
        "target": t.label(),
        "arms": len(r["arms"]),
        "first_calls_s": first,
        "race": {
            "seconds": race_s,
            "own_s": race_own,
            "pick": r["pick"],
            "stop": r["stop_reason"],
            "decided": r["decided"],
            "rounds": len(r["rounds"]),
            "retimed": r["retimed"],
            "runner_up": r["runner_up"],
            "factor": r["factors"]["time"],
            "replicates": {k: v["n_replicates"] for k, v in r["arms"].items()},
            "text": a["text"],
        },
        "grid": g,
        "grid_same_confidence": same,
        "same_pick": g["pick"] == r["pick"] or g["pick"] in r["ties"] + r["close"],
        "factor_default_grid": (g["seconds"] + first) / race_s,
        "factor_same_confidence": (same["seconds"] + first) / race_s,
        "factor_default_grid_own": g["seconds"] / race_own,
        "factor_same_confidence_own": same["seconds"] / race_own,
    }
    return out


def line(name: str, o: dict[str, Any]) -> str:
    r, g, s = o["race"], o["grid"], o["grid_same_confidence"]
    f = g["factor"]
    gf = f"{g['runner_up']} ×{f[0]:.3g} [{f[1]:.3g}, {f[2]:.3g}]" if f else "—"
    rf = r["factor"]
    rft = (
        f"{r['runner_up']} ×{rf['factor']:.3g} [{rf['low']:.3g}, {rf['high'] if rf['high'] is None else round(rf['high'], 3)}]"
        if rf
        else "—"
    )
    return (
        f"{name} ({o['arms']} arms): first calls {o['first_calls_s']:.1f} s\n"
        f"  race {r['seconds']:.1f} s ({r['own_s']:.1f} s after first calls) -> {r['pick']} ({r['stop']}, "
        f"{r['rounds']} rounds, re-timed {len(r['retimed'])}x); runner-up {rft}\n"
        f"  default grid {g['seconds']:.1f} s (+ first calls {o['first_calls_s'] + g['seconds']:.1f} s; timing "
        f"{g['timing_s']:.1f} s) -> {g['pick']}, runner-up {gf} (95%); same pick: {o['same_pick']}\n"
        f"  grid at the race's confidence {s['seconds']:.1f} s (+ first calls {s['seconds'] + o['first_calls_s']:.1f} s)\n"
        f"  race faster: x{o['factor_default_grid']:.2g} / x{o['factor_same_confidence']:.2g} (default / same "
        f"confidence, first calls in both); after first calls x{o['factor_default_grid_own']:.2g} / "
        f"x{o['factor_same_confidence_own']:.2g}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", nargs="*", default=DEFAULT, choices=list(TARGETS))
    ap.add_argument("--budget", type=float, default=60.0, help="recommend's budget per target in seconds (60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results to this file")
    a = ap.parse_args(argv)
    out = {"load_average": os.getloadavg(), "budget_s": a.budget, "seed": a.seed, "targets": {}}
    print(f"load average at start: {out['load_average']}", flush=True)
    for name in a.targets:
        out["targets"][name] = o = run_one(name, a.budget, a.seed)
        o["load_average"] = os.getloadavg()
        print(line(name, o), f"\n  load average {o['load_average']}", flush=True)
        print("  " + o["race"]["text"].replace("\n", "\n    "), flush=True)
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(out, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
