"""Validation of ``stochgrad recommend`` end to end (not an asv benchmark, not a test): real runner, real timing.

    python -m suites.benchmarks.recommend_validation [--seeds 20] [--budget 10] [--configs NAME ...] [--json FILE]

Every race is :func:`harness.runs.recommend_run.recommend_one` on a problem whose per-estimator exact variance is
known (tests/support/exact_variances.py: the Bernoulli toy f(b) = (b − 0.499)², p = 0.3, by enumeration and
piecewise Gauss-Legendre; the Gaussian quadratic by Gauss-Hermite quadrature), with the NumPy estimators drawn
through the one runner and timed by it: nothing is faked.  A race's exact θ of an arm is its exact variance × its
cost as that race measured it (seconds per call on this machine, or the runner's evaluation counts), so the
check is whether the race picks what is best at the costs it saw.  Criteria (the issue's): in the runs where the
best exact θ beats the next by >= 25% (at equal time this depends on the per-call times each run measured), the
pick is the best in >= 95% (19 of 20); over all runs the fraction with an error (an
arm eliminated by one whose exact θ is not smaller, a tie outside the tolerance, a decided pick more than the
tolerance worse than the best) stays within the family-wise α (5%); the race's spent time stays within its
budget × 1.1 plus its last round.  ``--rank-by evals`` configurations run only when the runner counts evaluations.
Results: docs/notes/recommend.md ("Validation of the wiring").
"""

from __future__ import annotations

import argparse
import io
import json
import math
from collections.abc import Mapping
from typing import Any

from harness.problems import ProblemSpec
from harness.runs.recommend_run import RecommendTarget, counts_available, recommend_one

BERN = ProblemSpec("bernoulli", "bernoulli_toy", 1, {"probs": 0.3})
NORM = ProblemSpec("normal", "quadratic", 1, {"loc": 0.5, "scale": 1.5}, {"k": 0.0})
FAR = ProblemSpec("normal", "quadratic", 1, {"loc": 5.0, "scale": 1.0}, {"k": 0.0})
# name: (problem, L, estimators, rank_by)
CONFIGS: dict[str, tuple[ProblemSpec, int, list[str], str]] = {
    "bern-all-time": (BERN, 2, ["score_function", "score_function_rloo", "arm", "disarm"], "time"),
    "bern-noDis-time": (BERN, 2, ["score_function", "score_function_rloo", "arm"], "time"),
    "gauss-time": (NORM, 2, ["pathwise", "score_function", "score_function_rloo"], "time"),
    "gauss-far-time": (FAR, 2, ["pathwise", "score_function", "score_function_rloo"], "time"),
    "gauss-sf-rloo-time": (NORM, 3, ["score_function", "score_function_rloo"], "time"),
    "bern-all-evals": (BERN, 2, ["score_function", "score_function_rloo", "arm", "disarm"], "evals"),
    "gauss-evals": (NORM, 2, ["pathwise", "score_function", "score_function_rloo"], "evals"),
    "gauss-sf-rloo-evals": (NORM, 3, ["score_function", "score_function_rloo"], "evals"),
}


def exact_variances(spec: ProblemSpec, L: int) -> dict[str, float]:
    # imported here: asv imports every module of this folder where the tests package may not be on the path
    from tests.support.exact_variances import bernoulli_toy_variances, gaussian_quadratic_variances

    if spec.distribution == "bernoulli":
        return bernoulli_toy_variances(float(spec.params["probs"]), 0.499, L)
    return gaussian_quadratic_variances(float(spec.params["loc"]), float(spec.params["scale"]), 0.0, L)


def exact_theta(answer: Mapping[str, Any], var: Mapping[str, float]) -> dict[str, float]:
    """Exact variance × the cost the race measured (its currency), per raced arm."""
    out = {}
    for name, arm in answer["race"]["arms"].items():
        c = arm.get("cost") or {}
        cost = c.get("seconds") if answer["rank_by"] == "time" else (c.get("f_evals") or 0) + (c.get("grad_evals") or 0)
        if cost:
            out[name] = var[name] * float(cost)
    return out


def judge_answer(answer: Mapping[str, Any], var: Mapping[str, float]) -> dict[str, Any]:
    """One answer against exact θ (tests/support/race_arms.judge's criteria, on the answer's dict)."""
    r = answer["race"]
    theta = exact_theta(answer, var)
    order = sorted(theta, key=theta.__getitem__)
    best = theta[order[0]]
    gap = theta[order[1]] / best if len(order) > 1 and best > 0 else math.inf
    lim = 1 + r["level"]["tolerance"]
    wrong = [(a, by) for rec in r["rounds"] for a, by in rec["eliminated"] if theta[a] <= theta[by]]
    pick = r["pick"]
    bad_tie = pick is not None and any(not 1 / lim <= theta[t] / theta[pick] <= lim for t in r["ties"])
    bad_pick = bool(r["decided"] and pick is not None and theta[pick] > lim * best)
    last = r["rounds"][-1]["wall_s"] if r["rounds"] else 0.0
    held = r["spent_s"] <= 1.1 * r["budget_s"] + last and len(r["rounds"]) <= r["rounds_planned"]
    return {
        "best": order[0],
        "gap": gap,
        "pick": pick,
        "picked_best": pick == order[0],
        "wrong": wrong,
        "bad_tie": bad_tie,
        "bad_pick": bad_pick,
        "error": bool(wrong) or bad_tie or bad_pick,
        "budget_held": held,
        "decided": r["decided"],
        "stop": r["stop_reason"],
        "retimed": len(r.get("retimed", [])),
        "spent_s": r["spent_s"],
        "race_budget_s": r["budget_s"],
        "rounds": len(r["rounds"]),
    }


def run_config(name: str, seeds: int, budget: float) -> list[dict[str, Any]]:
    spec, L, names, rank_by = CONFIGS[name]
    var = exact_variances(spec, L)
    t = RecommendTarget(spec, L, "numpy")
    return [
        judge_answer(
            recommend_one(t, budget_s=budget, rank_by=rank_by, estimators=names, seed=s, stream=io.StringIO()), var
        )
        for s in range(seeds)
    ]


def summarize_battery(outcomes: Mapping[str, list[dict[str, Any]]], alpha: float = 0.05) -> tuple[bool, list[str]]:
    """(criteria met, one line per configuration and an overall line)."""
    lines, runs, errors, ok = [], 0, 0, True
    for name, outs in outcomes.items():
        gaps = [o["gap"] for o in outs]
        clear = [o for o in outs if o["gap"] >= 1.25]  # at equal time the gap depends on the measured per-call times
        picked = sum(o["picked_best"] for o in clear)
        err = sum(o["error"] for o in outs)
        held = sum(o["budget_held"] for o in outs)
        runs, errors = runs + len(outs), errors + err
        need = math.ceil(0.95 * len(clear))
        ok &= held == len(outs) and picked >= need
        bests = sorted({o["best"] for o in outs})
        lines.append(
            f"{name}: gap {min(gaps):.3g}–{max(gaps):.3g}, best {'/'.join(bests)}; runs with gap >= 1.25: "
            f"{len(clear)}/{len(outs)}, best picked in {picked} of them (criterion: >= {need}); best picked overall "
            f"{sum(o['picked_best'] for o in outs)}/{len(outs)}, decided {sum(o['decided'] for o in outs)}, "
            f"re-timed in {sum(o.get('retimed', 0) > 0 for o in outs)}, "
            f"runs with an error {err}, budget held {held}/{len(outs)}, "
            f"median spent {sorted(o['spent_s'] for o in outs)[len(outs) // 2]:.3g} s"
        )
    ok &= errors <= alpha * runs
    lines.append(f"overall: {errors}/{runs} runs with an error (criterion <= {alpha:.0%}); criteria met: {ok}")
    return ok, lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=float, default=10.0, help="seconds per race (default 10)")
    ap.add_argument("--json", help="write the outcomes to this file")
    a = ap.parse_args(argv)
    counts = counts_available()
    outcomes = {}
    for name in a.configs:
        if CONFIGS[name][3] == "evals" and not counts:
            print(f"{name}: skipped (the runner reports no evaluation counts)", flush=True)
            continue
        outcomes[name] = run_config(name, a.seeds, a.budget)
        print(summarize_battery({name: outcomes[name]})[1][0], flush=True)
    ok, lines = summarize_battery(outcomes)
    print(lines[-1])
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(outcomes, fh, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
