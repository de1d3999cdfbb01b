"""Calibration of the race's defaults (not an asv benchmark): the measurements behind docs/notes/recommend.md.

    python -m suites.benchmarks.race_calibration corrections [--seeds 40]   # Bonferroni over rounds vs spending
    python -m suites.benchmarks.race_calibration ref_min [--seeds 40]       # heavy tails vs RaceConfig.ref_min
    python -m suites.benchmarks.race_calibration tails [--seeds 100]        # power of the tail flag vs replicates

Synthetic arms of exactly known variance and cost on a fake clock (tests/support/race_arms.py; the battery's
configurations).  ``corrections``: per configuration and correction, the best arm picked, runs with a wrong
elimination (an arm eliminated by one whose exact θ is not smaller), runs with any error (also a tie outside the
tolerance, a decided pick more than the tolerance worse than the best) and the median fake seconds spent.
``ref_min``: per heavy-tailed configuration, how often the normal arm is wrongly eliminated, and the battery's
median cost, for several ``ref_min``.  ``tails``: the fraction of replicate sets that
``harness.stats.tails.tail_diagnostics`` flags heavy (the flag ``summarize`` and the race use), per noise kind and
number of replicates; ``sf-gauss``/``sf-gauss-scale`` are single-sample score-function estimates of the loc/scale
gradient on normal(0.5, 1.5) with f = z² (polynomials of a Gaussian: every moment finite).
"""

from __future__ import annotations

import argparse
from typing import Any


def one(specs: list[dict], seed: int, cfg: Any, budget: float, rank_by: str = "time") -> tuple[Any, dict]:
    from harness.stats.race import race
    from tests.support.race_arms import FakeClock, synthetic_arms

    clock = FakeClock()
    arms, exact = synthetic_arms(specs, clock, seed=seed)
    return race(arms, budget_s=budget, clock=clock, config=cfg), {k: v[rank_by] for k, v in exact.items()}


def battery(cfg: Any, seeds: int) -> dict[str, dict[str, float]]:
    import numpy as np

    from tests.support.race_arms import SYNTHETIC, judge

    out = {}
    for name, specs in SYNTHETIC.items():
        res = [one(specs, s, cfg, 60.0) for s in range(seeds)]
        js = [judge(r, th, cfg.alpha) for r, th in res]
        out[name] = {
            "picked": sum(j["picked_best"] for j in js),
            "wrong_runs": sum(bool(j["wrong"]) for j in js),
            "error_runs": sum(j["error"] for j in js),
            "median_spent": float(np.median([r.spent_s for r, _ in res])),
        }
    return out


def tails(seeds: int) -> None:
    import numpy as np

    from harness.stats.metrics import replicate_variances
    from harness.stats.tails import tail_diagnostics
    from tests.support.race_arms import unit_noise

    def draw(rng: np.random.Generator, kind: str, R: int) -> np.ndarray:
        if kind.startswith("sf-gauss"):
            e = rng.standard_normal(R)
            z = 0.5 + 1.5 * e
            return (z**2 * (e if kind == "sf-gauss" else e**2 - 1) / 1.5)[:, None]
        return unit_noise(rng, kind, (R, 1))

    kinds = ("normal", "exp", "t5", "sf-gauss", "sf-gauss-scale", "t3", "pareto2.5", "pareto2.2", "pareto1.5")
    for kind in kinds:
        row = []
        for R in (128, 512, 2048):
            flags = [
                tail_diagnostics(replicate_variances(draw(np.random.default_rng(s), kind, R)))["heavy"] > 0
                for s in range(seeds)
            ]
            row.append(f"R={R}: {np.mean(flags):.2f}")
        print(f"{kind:15s} flagged fraction  " + "  ".join(row), flush=True)


def main(argv: list[str] | None = None) -> int:
    from harness.stats.race import RaceConfig
    from tests.support.race_arms import HEAVY

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["corrections", "ref_min", "tails"])
    ap.add_argument("--seeds", type=int, default=40)
    a = ap.parse_args(argv)
    if a.part == "tails":
        tails(a.seeds)
        return 0
    if a.part == "corrections":
        for corr in ("bonferroni", "spending"):
            for name, r in battery(RaceConfig(correction=corr), a.seeds).items():
                print(
                    f"{corr:10s} {name:14s} picked best {r['picked']}/{a.seeds}  runs with a wrong elimination "
                    f"{r['wrong_runs']}, with any error {r['error_runs']}  median spent {r['median_spent']:.3g} s",
                    flush=True,
                )
        return 0
    for ref_min in (128, 512, 1024):
        cfg = RaceConfig(ref_min=ref_min)
        for name, specs in HEAVY.items():
            res = [one(specs, s, cfg, 20.0)[0] for s in range(a.seeds)]
            wrong = sum("normal" in r.eliminated for r in res) if not name.endswith("best") else 0
            picks = {p: sum(r.pick == p for r in res) for p in ("heavy", "normal", None)}
            print(
                f"ref_min {ref_min:5d} {name:19s} normal wrongly eliminated {wrong}/{a.seeds}  picks {picks}",
                flush=True,
            )
        b = battery(cfg, a.seeds)
        print(
            f"ref_min {ref_min:5d} battery median spent: "
            + ", ".join(f"{k} {v['median_spent']:.3g}" for k, v in b.items())
            + f"; runs with a wrong elimination {sum(v['wrong_runs'] for v in b.values())}, with any error "
            + f"{sum(v['error_runs'] for v in b.values())} of {a.seeds * len(b)}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
