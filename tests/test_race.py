"""The race of ``stochgrad recommend`` (harness.stats.race): equal-cost allocation, elimination, ties, budget, biased,
oracle, heavy-tailed and exact arms, and validation against exactly known cost-normalised variances.

Validation (docs/notes/recommend.md): synthetic arms of exact variance and cost (normal, t5, skewed noise), and
registered estimators on problems whose per-estimator variance is known exactly (Bernoulli toy by enumeration and
piecewise quadrature over the ARM uniform; Gaussian quadratic by Gauss-Hermite quadrature, exact for its
polynomial integrands), drawn through ``harness.measure.runner.estimate`` (the engine itself stays pure).  Every
race runs on a fake clock (costs are given, time never measured): where the best θ beats the next by >= 25% the
pick must be it in >= 19 of 20 seeds; over all races the fraction with a wrong elimination must stay within the
stated family-wise error (5%); the budget must hold within 10% plus one round.  The fast run uses a few seeds;
the 20-seed battery is marked slow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

import harness.stats.race as race_mod
from harness.problems import ProblemSpec
from harness.stats.metrics import ratio_interval, replicate_variances, summarize, variance_interval
from harness.stats.race import Arm, Cost, Draw, RaceConfig, RaceError, RaceResult, race
from tests.support.exact_variances import bernoulli_toy_variances, gaussian_quadratic_variances
from tests.support.race_arms import (
    SYNTHETIC,
    EstimatorSampler,
    FakeClock,
    RetimingSampler,
    SpikedSampler,
    SyntheticSampler,
    judge,
    synthetic_arms,
)

ALPHA = RaceConfig().alpha


# -- metrics additions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,C", [("normal", 1), ("normal", 5), ("t3", 1), ("exp", 3)])
def test_variance_interval_matches_summarize(kind: str, C: int) -> None:
    from tests.support.race_arms import unit_noise

    seed = 11
    G = 2.0 + 1.5 * unit_noise(np.random.default_rng(seed), kind, (4000, C))
    ref = summarize(G, np.zeros(C))
    got = variance_interval(replicate_variances(G))
    assert got["variance"] == pytest.approx(ref["variance"], rel=1e-12), f"seed={seed}"
    assert got["low"] == pytest.approx(ref["variance_ci_low"], rel=1e-9), f"seed={seed}"
    assert got["heavy_tail"] == ref["heavy_tail"] and got["valid"] == ref["variance_ci_valid"], f"seed={seed}"
    if got["valid"]:
        assert got["high"] == pytest.approx(ref["variance_ci_high"], rel=1e-9), f"seed={seed}"
    else:
        assert math.isnan(got["high"]) and math.isnan(ref["variance_ci_high"])


def test_ratio_interval() -> None:
    r, lo, hi = ratio_interval(2.0, 1.8, 2.2, 1.0, 0.9, 1.1)
    assert r == 2.0 and lo < 2.0 < hi
    # log half-widths in quadrature: low = r·exp(-hypot(ln(2/1.8), ln(1.1/1)))
    assert lo == pytest.approx(2 * math.exp(-math.hypot(math.log(2 / 1.8), math.log(1.1))), rel=1e-12)
    assert hi == pytest.approx(2 * math.exp(math.hypot(math.log(2.2 / 2), math.log(1 / 0.9))), rel=1e-12)
    assert ratio_interval(1.0, 0.0, 2.0, 1.0, 0.5, 2.0)[1] == 0.0  # a lower limit of 0: factor may be 0
    assert ratio_interval(1.0, 0.5, 2.0, 1.0, 0.0, 2.0)[2] == math.inf
    assert math.isnan(ratio_interval(1.0, 0.5, math.nan, 1.0, 0.5, 2.0)[2])  # no upper limit (heavy tail)


def test_engine_is_pure() -> None:
    """harness.stats.race imports numpy/scipy and harness.stats only (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = "import json, sys; import harness.stats.race; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ours = {m for m in json.loads(out.stdout) if m.split(".")[0] in ("harness", "estimators", "stochgrad")}
    assert ours <= {"harness", "harness.stats", "harness.stats.metrics", "harness.stats.tails", "harness.stats.race"}, (
        ours
    )


# -- configuration and arms --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key,value",
    [
        ("rank_by", "samples"),
        ("correction", "none"),
        ("alpha", 0.0),
        ("pilot", 10),
        ("growth", 1.0),
        ("bias_batches", 7),
    ],
)
def test_config_rejects_bad_values(key: str, value: object) -> None:
    with pytest.raises(RaceError, match=f"{key} = .*valid: "):
        RaceConfig(**{key: value})  # type: ignore[arg-type]


def test_bad_arms_and_budget_are_refused() -> None:
    clock = FakeClock()
    arms, _ = synthetic_arms([dict(name="a", variance=1, seconds=1, evals=1)] * 2, clock, seed=0)
    with pytest.raises(RaceError, match="duplicate names"):
        race(arms, clock=clock)
    with pytest.raises(RaceError, match="budget_s"):
        race(arms[:1], budget_s=0, clock=clock)


@pytest.mark.parametrize("rank_by", ["time", "evals"])
def test_rounds_are_at_equal_cost(rank_by: str) -> None:
    """After the pilot every survivor gets the same share of a round's cost: 4x the cost, 1/4 the replicates."""
    clock = FakeClock()
    specs = [
        dict(name="cheap", variance=1.0, seconds=1e-4, evals=2),
        dict(name="dear", variance=0.25, seconds=4e-4, evals=8),  # the same θ in both currencies
    ]
    arms, _ = synthetic_arms(specs, clock, seed=3)
    res = race(arms, budget_s=5.0, clock=clock, config=RaceConfig(rank_by=rank_by))
    assert len(res.rounds) >= 3, res.text()
    for rec in res.rounds[1:]:
        n = rec.replicates
        assert n["cheap"] == pytest.approx(4 * n["dear"], abs=4), (rec, rank_by)
    assert res.rounds[0].replicates == {"cheap": 128, "dear": 128}  # the pilot: equal replicates


def test_oracle_is_not_raced_and_biased_arms_are_never_the_pick() -> None:
    clock = FakeClock()
    specs = [
        dict(name="a", variance=1.0, seconds=1e-4, evals=2),
        dict(name="b", variance=2.0, seconds=1e-4, evals=2),
        dict(name="relaxed", variance=0.01, seconds=1e-4, evals=2, mean=1.5, unbiased=False),  # bias 0.5
    ]
    arms, _ = synthetic_arms(specs, clock, seed=5)
    oracle = SyntheticSampler(1e-6, 1e-4, 2, clock, seed=9)
    arms.append(Arm("oracle", oracle, oracle=True))
    res = race(arms, budget_s=20.0, clock=clock, truth=np.array([1.0]))
    assert res.pick == "a" and res.excluded == {"oracle": "oracle: uses the exact answer"}
    assert oracle.calls == [] and "oracle" not in res.arms
    rel = res.arms["relaxed"]
    assert rel["status"] != "pick" and not rel["unbiased"] and res.biased_leader == "relaxed"
    assert rel["bias_against"] == "truth" and rel["bias_detected"]
    assert rel["bias"] == pytest.approx(0.5, abs=4 * math.sqrt(0.01 / rel["n_replicates"])), res.text()
    assert res.arms["a"]["bias_against"] == "truth" and not res.arms["a"]["bias_detected"]
    assert "biased (never the pick): relaxed" in res.text()


def test_bias_without_truth_is_measured_against_the_pick() -> None:
    clock = FakeClock()
    specs = [
        dict(name="a", variance=1.0, seconds=1e-4, evals=2),
        dict(name="b", variance=3.0, seconds=1e-4, evals=2),
        dict(name="st", variance=0.5, seconds=1e-4, evals=2, mean=1.3, unbiased=False),
    ]
    arms, _ = synthetic_arms(specs, clock, seed=6)
    res = race(arms, budget_s=20.0, clock=clock)
    st = res.arms["st"]
    assert res.pick == "a" and st["bias_against"] == "a" and st["bias_detected"]
    se = math.sqrt(0.5 / st["n_replicates"] + 1.0 / res.arms["a"]["n_replicates"])
    assert st["bias"] == pytest.approx(0.3, abs=4 * se)


def test_heavy_tailed_arm_is_never_picked() -> None:
    """An arm flagged heavy-tailed (Pareto tail of index 1.2: infinite variance) with the smallest point estimate: it
    has no valid interval, so it can neither eliminate, tie nor be picked (nor lead while flagged)."""
    for seed in range(4):
        clock = FakeClock()
        specs = [
            dict(name="heavy", variance=1e-6, seconds=1e-4, evals=2, kind="pareto1.2"),
            dict(name="normal", variance=1.0, seconds=1e-4, evals=2),
        ]
        arms, _ = synthetic_arms(specs, clock, seed=seed)
        res = race(arms, budget_s=10.0, clock=clock)
        h = res.arms["heavy"]
        assert res.pick == "normal", f"seed={seed}: {res.text()}"
        assert h["heavy_tail"] and not h["valid"] and math.isnan(h["time"]["high"]), f"seed={seed}"
        assert h["variance"] < res.arms["normal"]["variance"], f"seed={seed}: the point estimate is not the lowest"
        assert not any(by == "heavy" for r in res.rounds for _, by in r.eliminated), f"seed={seed}"
        assert res.leaders["time"] == "normal" and "heavy" in res.not_comparable + list(res.eliminated), f"seed={seed}"
        if "heavy" in res.not_comparable:  # it may be better (lower point estimate): the race is not decided
            assert res.stop_reason in ("budget", "rounds") and not res.decided, f"seed={seed}: {res.text()}"
            assert ": no upper limit): heavy, point estimate ×" in res.text()


def test_a_flagged_arm_clearly_worse_does_not_hold_the_decision_up() -> None:
    """Flagged on >= 2 ref_min replicates with a point estimate above the leader's upper limit: the race is decided
    without it (its lower limit may never rise above the leader's upper limit) and it is reported not comparable."""
    for seed in range(3):
        clock = FakeClock()
        specs = [  # the variance sits in rare jumps: the truncated lower bound stays far below the variance
            dict(name="heavy", variance=3.0, seconds=1e-4, evals=2, kind="spike3"),
            dict(name="normal", variance=1.0, seconds=1e-4, evals=2),
        ]
        arms, _ = synthetic_arms(specs, clock, seed=seed)
        res = race(arms, budget_s=30.0, clock=clock)
        assert res.pick == "normal" and res.decided and res.stop_reason == "one_valid_left", (
            f"seed={seed}: {res.text()}"
        )
        assert res.not_comparable == ["heavy"] and res.arms["heavy"]["n_replicates"] >= 1024, f"seed={seed}"
        assert "heavy" not in res.eliminated and res.spent_s < 1.0, f"seed={seed}: {res.text()}"


def test_runner_up_may_be_heavy_tailed_with_a_lower_limit_only() -> None:
    clock = FakeClock()
    specs = [
        dict(name="normal", variance=1.0, seconds=1e-4, evals=2),
        dict(name="heavy", variance=0.5, seconds=1e-4, evals=2, kind="pareto1.2"),
    ]
    arms, _ = synthetic_arms(specs, clock, seed=0)
    res = race(arms, budget_s=5.0, clock=clock)
    f = res.factors["time"]
    assert res.pick == "normal" and res.runner_up == "heavy" and f is not None, res.text()
    assert f.low > 0 and math.isnan(f.high) and "[" in res.text() and "—]" in res.text()


@pytest.mark.parametrize("correction", ["bonferroni", "spending"])
def test_family_wise_level_per_round(correction: str) -> None:
    """z of round k: Bonferroni over the intervals made (one per survivor + one factor per non-leader survivor) at
    the α of the round (α / rounds planned, or α / (k (k + 1)))."""
    from harness.stats.metrics import bonferroni_z

    clock = FakeClock()
    specs = [dict(name=f"a{i}", variance=v, seconds=1e-4, evals=2) for i, v in enumerate([1.0, 1.02, 9.0])]
    arms, _ = synthetic_arms(specs, clock, seed=1)
    res = race(arms, budget_s=3.0, clock=clock, config=RaceConfig(correction=correction))
    alive = 3
    for r in res.rounds:
        a = 0.05 / res.rounds_planned if correction == "bonferroni" else 0.05 / (r.round * (r.round + 1))
        assert r.alpha == pytest.approx(a) and r.z == pytest.approx(bonferroni_z(2 * alive - 1, 1 - a)), r
        alive -= len(r.eliminated)
    assert sum(r.alpha for r in res.rounds) <= 0.05 + 1e-12


def test_exact_arms_win_and_tie_with_each_other() -> None:
    clock = FakeClock()
    specs = [
        dict(name="noisy", variance=1e-6, seconds=1e-4, evals=2),
        dict(name="exact_dear", variance=0.0, seconds=5e-4, evals=4),
        dict(name="exact_cheap", variance=0.0, seconds=2e-4, evals=2),
    ]
    arms, _ = synthetic_arms(specs, clock, seed=1)
    res = race(arms, budget_s=10.0, clock=clock)
    assert res.stop_reason == "tied" and res.pick == "exact_cheap" and res.ties == ["exact_dear"], res.text()
    assert res.eliminated == {"noisy": 1} and res.arms["exact_cheap"]["exact"]
    assert res.factors["time"] is not None and res.factors["time"].factor == 1.0


def test_imprecise_per_call_times_stop_the_race_early() -> None:
    """Equal θ, per-call times with a 50% relative IQR: the factor interval at equal time cannot shrink below the
    times' uncertainty, so once the variance part is small the race stops (time_limited, not decided) instead of
    spending its budget; ranked by evaluations (exact costs) the same race is decided."""
    clock = FakeClock()
    specs = [dict(name=f"a{i}", variance=1.0, seconds=1e-4, evals=2, rel_iqr=0.5) for i in range(2)]
    arms, _ = synthetic_arms(specs, clock, seed=3)
    res = race(arms, budget_s=60.0, clock=clock)
    assert res.stop_reason == "time_limited" and not res.decided and res.spent_s < 6.0, res.text()
    assert res.unresolved == [n for n in ("a0", "a1") if n != res.pick] and "too imprecise" in res.text()
    clock = FakeClock()
    arms, _ = synthetic_arms(specs, clock, seed=3)
    res = race(arms, budget_s=60.0, clock=clock, config=RaceConfig(rank_by="evals"))
    assert res.stop_reason in ("tied", "within_tolerance") and res.decided, res.text()


def _retiming_arms(clock: FakeClock, log: list[str], variances: list[float], **kw: object) -> list[Arm]:
    return [
        Arm(f"a{i}", RetimingSampler(v, 1e-4, 2, clock, seed=10 + i, rel_iqr=0.5, log=log, name=f"a{i}", **kw))
        for i, v in enumerate(variances)
    ]


def test_time_limited_race_retimes_the_survivors_interleaved_and_goes_on() -> None:
    """θ 1 : 1.4 with per-call times of 50% relative IQR on 20 timing samples: the factor's interval at equal time is
    dominated by the times' uncertainty (time_limited).  Samplers that can be re-timed are re-timed (round-robin
    slices, the order rotating, pooled: the median's standard error shrinks) and the race goes on to a decision,
    saying so; without ``retime`` (or with max_retimes = 0) the same race stops time limited.  Fake clock: the
    re-timing's seconds are counted in the budget."""
    clock, log = FakeClock(), []
    res = race(_retiming_arms(clock, log, [1.0, 1.4]), budget_s=60.0, clock=clock)
    assert res.retimed, res.text()
    assert res.decided and res.pick == "a0" and ("a1" in res.eliminated or "a1" in res.worse), res.text()
    n = RaceConfig().retime_slices
    assert len(log) == 2 * n * len(res.retimed)
    for j in range(0, len(log), 2):  # every slice times both survivors; the first of a slice alternates
        assert sorted(log[j : j + 2]) == ["a0", "a1"], log
    assert log[0:2] == ["a0", "a1"] and log[2:4] == ["a1", "a0"]
    assert [r["for"] for r in res.retimed].count("report") <= 1
    rounds = {r["round"] for r in res.retimed if r["for"] == "decision"}
    assert rounds and all(res.rounds[k - 1].retimed == ["a0", "a1"] and res.rounds[k - 1].retime_s > 0 for k in rounds)
    assert "re-timed per-call times before round" in res.text()
    assert res.to_dict()["retimed"][0]["arms"] == ["a0", "a1"]
    last = res.rounds[-1].wall_s
    assert res.spent_s <= 1.1 * 60.0 + last and len(res.rounds) <= res.rounds_planned
    # the same arms without re-timing: not decided
    clock, log = FakeClock(), []
    res = race(_retiming_arms(clock, log, [1.0, 1.4]), budget_s=60.0, clock=clock, config=RaceConfig(max_retimes=0))
    assert res.stop_reason == "time_limited" and not res.decided and not res.retimed and not log, res.text()


def test_retiming_starts_as_soon_as_the_times_dominate() -> None:
    """θ 1 : 31, t5 noise, per-call times with IQR 2x their median on 11 samples (a load spike during the quick
    timing): the factor's interval is unbounded because of the times while the variance part still shrinks with
    replicates.  Re-timing starts once the times' part of the interval exceeds the variances' (not only once it is
    4x it, when the race without re-timing stops time limited), so the race decides; without re-timing it stops
    time limited, later.  Fake clock, fixed seeds."""

    def run(max_retimes: int) -> RaceResult:
        clock, log = FakeClock(), []
        kw = dict(clock=clock, log=log, kind="t5", samples=11)
        a = RetimingSampler(1.0, 1.8e-5, 2, seed=2, rel_iqr=2.0, name="a", **kw)  # type: ignore[arg-type]
        b = RetimingSampler(31.0, 3.6e-5, 2, seed=3, rel_iqr=2.4, name="b", **kw)  # type: ignore[arg-type]
        return race([Arm("a", a), Arm("b", b)], budget_s=10.0, clock=clock, config=RaceConfig(max_retimes=max_retimes))

    with_, without = run(3), run(0)
    assert without.stop_reason == "time_limited" and not without.decided, without.text()
    assert with_.decided and with_.pick == "a" and with_.eliminated == {"b": len(with_.rounds)}, with_.text()
    assert with_.retimed[0]["round"] < len(without.rounds), (with_.text(), without.text())


def test_an_unbounded_factor_is_re_timed_for_the_report() -> None:
    """A clear decision (θ 1 : 30) made although the pick's per-call time is so imprecise (relative IQR 2 on 20
    samples) that its θ has a zero lower limit, so the runner-up's factor would be unbounded above: the pick and the
    runner-up are re-timed once after the decision (interleaved) and the factor reported is bounded; without
    ``retime`` it stays unbounded (JSON null)."""
    for can in (True, False):
        clock, log = FakeClock(), []
        kw = dict(clock=clock, log=log)
        a = RetimingSampler(1.0, 1e-4, 2, seed=1, rel_iqr=2.0, name="a", **kw)  # type: ignore[arg-type]
        b = RetimingSampler(30.0, 1e-4, 2, seed=2, rel_iqr=0.02, name="b", **kw)  # type: ignore[arg-type]
        arms = [Arm("a", a), Arm("b", b if can else (lambda n, b=b: b.draw(n)))]  # a callable has no retime
        res = race(arms, budget_s=60.0, clock=clock)
        f = res.factors["time"]
        assert res.pick == "a" and res.decided and f is not None and f.name == "b", res.text()
        if can:
            assert [r["for"] for r in res.retimed] == ["report"]
            assert set(log) == {"a", "b"} and len(log) == 2 * RaceConfig().retime_slices
            assert math.isfinite(f.high) and f.low > 1, res.text()
            assert "after the decision, for the factor" in res.text()
        else:
            assert not res.retimed and not log and math.isinf(f.high), res.text()


def test_an_elimination_at_equal_time_is_confirmed_by_re_timing() -> None:
    """b is truly the best at equal time (θ 0.8 vs a's 1.0) but its one quick timing caught a load spike (2.5x its
    per-call time, with a small IQR that hides it): its apparent factor to a is 2.0.  Before eliminating it by less
    than ``confirm_factor`` the race re-times b and its reference a interleaved; the pooled time is b's true one,
    and b wins.  c, 10x worse, is eliminated without re-timing.  With confirmation off (``confirm_factor = 1``) the
    same race eliminates b on the spiked time and picks a: the check can fail.  Fake clock, fixed seeds."""

    def run(confirm_factor: float) -> tuple[RaceResult, list[str]]:
        clock, log = FakeClock(), []
        kw = dict(clock=clock, log=log, rel_iqr=0.05)
        a = RetimingSampler(1.0, 1e-4, 2, seed=1, name="a", **kw)  # type: ignore[arg-type]
        b = SpikedSampler(0.8, 1e-4, 2, seed=2, name="b", spike=2.5, **kw)  # type: ignore[arg-type]
        c = RetimingSampler(10.0, 1e-4, 2, seed=3, name="c", **kw)  # type: ignore[arg-type]
        arms = [Arm("a", a), Arm("b", b), Arm("c", c)]
        return race(arms, budget_s=60.0, clock=clock, config=RaceConfig(confirm_factor=confirm_factor)), log

    res, log = run(2.0)
    assert res.pick == "b" and "b" not in res.eliminated and res.decided, res.text()
    confirms = [r for r in res.retimed if r["for"] == "confirm"]
    assert [r["arms"] for r in confirms] == [["a", "b"]], res.text()
    assert "c" in res.eliminated and "c" not in log, "a clear loser is not re-timed"
    assert log[:4] == ["a", "b", "b", "a"], log  # interleaved slices, the first of a slice alternating
    k = confirms[0]["round"]
    assert res.rounds[k - 1].confirmed == ["a", "b"] and "to confirm eliminations at equal time" in res.text()
    off, log_off = run(1.0)
    assert off.pick == "a" and "b" in off.eliminated, off.text()
    assert not [r for r in off.retimed if r["for"] == "confirm"]


def test_retiming_is_bounded_by_the_budget_and_max_retimes() -> None:
    """Equal θ: re-timing cannot separate the arms; the race re-times at most max_retimes times, never more than
    retime_share of the budget left each time, and stops time limited (or within tolerance) within its budget."""
    for budget in (2.0, 60.0):
        clock, log = FakeClock(), []
        res = race(_retiming_arms(clock, log, [1.0, 1.0], drift=0.0), budget_s=budget, clock=clock)
        cfg = RaceConfig()
        assert [r["for"] for r in res.retimed].count("decision") <= cfg.max_retimes, res.text()
        assert [r["for"] for r in res.retimed].count("report") <= 1, res.text()
        spent_before = 0.0
        for r in res.retimed:
            prev = res.rounds[r["round"] - (2 if r["for"] == "decision" else 1)]
            assert r["seconds"] <= cfg.retime_share * (budget - prev.spent_s) + 1e-9
            spent_before = prev.spent_s
        assert spent_before <= budget
        assert res.spent_s <= 1.1 * budget + res.rounds[-1].wall_s, res.text()
        assert res.stop_reason in ("time_limited", "tied", "within_tolerance", "budget", "rounds"), res.text()


def test_progress_reports_the_live_leader_and_survivors() -> None:
    clock = FakeClock()
    specs = [dict(name=f"a{i}", variance=v, seconds=1e-4, evals=2) for i, v in enumerate([1.0, 1.6, 30.0])]
    arms, _ = synthetic_arms(specs, clock, seed=2)
    seen: list[race_mod.RoundRecord] = []
    res = race(arms, budget_s=20.0, clock=clock, progress=seen.append)
    assert seen == res.rounds and [r.round for r in seen] == list(range(1, len(seen) + 1))
    before = ["a0", "a1", "a2"]
    for r in seen:  # survivors = the previous ones less this round's eliminations, all by the leader
        assert r.survivors == [a for a in before if a not in {e for e, _ in r.eliminated}], r
        assert r.leader == "a0" and all(by == "a0" for _, by in r.eliminated), r
        before = r.survivors
    assert seen[-1].survivors == ["a0"] and res.eliminated["a2"] <= res.eliminated["a1"] == len(seen)
    # no arm eliminates before it has ref_min = 512 replicates: not in the pilot (128) nor in round 2 (256)
    assert seen[0].eliminated == seen[1].eliminated == [] and res.runner_up == "a1"


def test_result_is_json_and_text() -> None:
    clock = FakeClock()
    specs = [dict(name="a", variance=1.0, seconds=1e-4, evals=2), dict(name="b", variance=1.5, seconds=1e-4, evals=1)]
    arms, _ = synthetic_arms(specs, clock, seed=4)
    res = race(arms, budget_s=10.0, clock=clock)
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["pick"] == res.pick and d["rank_by"] == "time" and len(d["rounds"]) == len(res.rounds)
    assert set(d["factors"]) == {"time", "evals"} and d["arms"]["a"]["cost"]["f_evals"] == 2
    # b is worse at equal time but better at equal evaluations: both factors are reported, and the other leader
    assert d["factors"]["evals"]["factor"] < 1 < d["factors"]["time"]["factor"]
    assert d["leaders"]["evals"] == "b" and "lowest point estimate at equal evaluations: b" in res.text()


def test_only_oracle_or_biased_arms_give_no_pick() -> None:
    clock = FakeClock()
    res = race([Arm("oracle", SyntheticSampler(1.0, 1e-4, 2, clock, seed=0), oracle=True)], clock=clock)
    assert res.pick is None and res.stop_reason == "no_arms" and res.rounds == [] and "oracle" in res.excluded
    json.dumps(res.to_dict(), allow_nan=False)
    specs = [dict(name=f"b{i}", variance=v, seconds=1e-4, evals=2, unbiased=False) for i, v in enumerate([1, 5])]
    arms, _ = synthetic_arms(specs, clock, seed=1)
    res = race(arms, budget_s=5.0, clock=clock, truth=np.ones(1))
    assert res.pick is None and res.biased_leader == "b0" and "no unbiased estimator applies" in res.pick_note
    assert res.eliminated == {"b1": res.eliminated["b1"]} and res.arms["b0"]["bias_against"] == "truth"


def test_failing_nonfinite_and_malformed_arms_are_dropped() -> None:
    clock = FakeClock()
    arms, _ = synthetic_arms([dict(name="a", variance=1.0, seconds=1e-4, evals=2)], clock, seed=0)

    def boom(n: int) -> Draw:
        raise RuntimeError("CUDA out of memory")

    def nans(n: int) -> Draw:
        G = np.ones((n, 2))
        G[::10] = np.nan
        return Draw(G, Cost(1e-4, 0, 1, f_evals=1))

    def short(n: int) -> Draw:
        return Draw(np.ones((n - 1, 2)), Cost(1e-4, 0, 1, f_evals=1))

    def no_time(n: int) -> Draw:
        return Draw(np.random.default_rng(n).standard_normal((n, 2)), Cost(f_evals=1))

    arms += [Arm("boom", boom), Arm("nans", nans), Arm("short", short), Arm("untimed", no_time)]
    res = race(arms, budget_s=1.0, clock=clock)
    reasons = {k: v["reason"] for k, v in res.arms.items() if v["status"] == "dropped"}
    assert reasons["boom"] == "error: RuntimeError: CUDA out of memory"
    assert reasons["nans"].startswith("non-finite estimates in 13 of 128")
    assert "returned shape [127, 2]; expected [n, C] with n = 128" in reasons["short"]
    assert "no cost to rank by 'time'" in reasons["untimed"]
    assert res.pick == "a" and res.stop_reason == "one_left"


@pytest.mark.parametrize("overhead,draw_factor", [(0.0, 1.0), (0.05, 1.0), (0.0, 0.3), (0.02, 3.0)])
def test_budget_is_held(overhead: float, draw_factor: float) -> None:
    """Arms that cannot be separated: the race runs until the budget, which it holds within 10% plus one round,
    whatever the per-call overhead and the ratio of drawing cost to the declared per-call time."""
    for budget in (0.5, 3.0, 40.0):
        clock = FakeClock()
        specs = [dict(name=f"a{i}", variance=1.0 + 0.02 * i, seconds=1e-4 * (i + 1), evals=2) for i in range(3)]
        arms, _ = synthetic_arms(
            [{**s, "variance": s["variance"] / (i + 1)} for i, s in enumerate(specs)],
            clock,
            seed=7,
            overhead=overhead,
            draw_factor=draw_factor,
            kind="exp",
        )
        res = race(arms, budget_s=budget, clock=clock, config=RaceConfig(tolerance=0.0))
        last = res.rounds[-1].wall_s
        assert res.spent_s <= 1.1 * budget + last, (budget, res.spent_s, last, len(res.rounds))
        assert len(res.rounds) <= res.rounds_planned <= RaceConfig().max_rounds
        assert res.stop_reason in ("budget", "rounds") and not res.decided
        if budget >= 3.0:  # enough for several rounds: most of the budget is used
            assert res.spent_s >= 0.5 * budget, (budget, res.spent_s, [r.wall_s for r in res.rounds])


def test_a_machine_that_slows_down_does_not_blow_the_budget() -> None:
    """Draws become 20x slower than the rates the race planned its next round with (another job started): the
    round stops drawing once the budget with its slack is spent (between arms and between an arm's chunks), so
    the overrun is at most one chunk of one arm, not the whole round."""
    clock = FakeClock()
    specs = [dict(name=f"a{i}", variance=1.0 + 0.02 * i, seconds=1e-4, evals=2) for i in range(4)]
    arms, _ = synthetic_arms(specs, clock, seed=5)
    samplers = [a.sampler for a in arms]
    slow = {"after": 2}

    def slowed(sm: SyntheticSampler) -> Callable[[int], Draw]:
        def draw(n: int) -> Draw:
            if len(sm.calls) >= slow["after"]:
                sm.draw_factor = 20.0
            return sm.draw(n)

        return draw

    arms = [Arm(a.name, slowed(sm)) for a, sm in zip(arms, samplers, strict=True)]
    cfg = RaceConfig(tolerance=0.0, max_draw_elems=64)  # chunks of 64 replicates (C = 1)
    res = race(arms, budget_s=2.0, clock=clock, config=cfg)
    chunk = 64 * 1e-4 * 20.0
    assert res.spent_s <= 1.1 * 2.0 + chunk + 1e-9, (res.spent_s, [r.wall_s for r in res.rounds])
    last = res.rounds[-1]
    assert sum(last.replicates.values()) < sum(res.rounds[-2].replicates.values()) * 2 * 4, last


# -- validation: synthetic arms of exact θ ----------------------------------------------------------------------
def run_synthetic(name: str, seed: int, rank_by: str, budget: float = 60.0) -> tuple[RaceResult, dict[str, float]]:
    clock = FakeClock()
    arms, exact = synthetic_arms(SYNTHETIC[name], clock, seed=seed)
    res = race(arms, budget_s=budget, clock=clock, config=RaceConfig(rank_by=rank_by))
    return res, {k: v[rank_by] for k, v in exact.items()}


# -- validation: registered estimators with exact per-estimator variance ----------------------------------------
# f_evals, grad_evals of one L-sample estimate (the docs' cost table: issue 19 A counts them through the Context)
EVALS: dict[str, Callable[[int], tuple[int, int]]] = {
    "score_function": lambda L: (L, 0),
    "score_function_rloo": lambda L: (L, 0),
    "arm": lambda L: (2 * L, 0),
    "disarm": lambda L: (2 * L, 0),
    "pathwise": lambda L: (0, L),
}
U = 1e-5  # fake seconds per evaluation
BERN = ("bernoulli", "bernoulli_toy", {"probs": 0.3}, {})
NORM = ("normal", "quadratic", {"loc": 0.5, "scale": 1.5}, {"k": 0.0})
# name: (problem, L, estimators, rank_by, time factor per estimator: fake seconds = U × evals × factor)
REAL: dict[str, tuple[tuple, int, list[str], str, dict[str, float]]] = {
    "bern-all-evals": (BERN, 2, ["score_function", "score_function_rloo", "arm", "disarm"], "evals", {}),
    "bern-all-time": (BERN, 2, ["score_function", "score_function_rloo", "arm", "disarm"], "time", {"disarm": 0.85}),
    "bern-noDis-evals": (BERN, 2, ["score_function", "score_function_rloo", "arm"], "evals", {}),
    "bern-L3-time": (BERN, 3, ["score_function", "score_function_rloo", "arm", "disarm"], "time", {"arm": 0.8}),
    "gauss-evals": (NORM, 2, ["pathwise", "score_function", "score_function_rloo"], "evals", {}),
    "gauss-time": (NORM, 2, ["pathwise", "score_function", "score_function_rloo"], "time", {"pathwise": 3.0}),
    "gauss-sf-rloo-evals": (NORM, 3, ["score_function", "score_function_rloo"], "evals", {}),
}


def exact_variances(problem: tuple, L: int) -> dict[str, float]:
    if problem is BERN:
        return bernoulli_toy_variances(0.3, 0.499, L)
    return gaussian_quadratic_variances(0.5, 1.5, 0.0, L)


def run_real(name: str, seed: int, budget: float = 30.0) -> tuple[RaceResult, dict[str, float]]:
    (dist, obj, params, oparams), L, names, rank_by, factor = REAL[name]
    problem = ProblemSpec(dist, obj, 1, params, oparams).build()
    var = exact_variances(REAL[name][0], L)
    clock = FakeClock()
    arms, theta = [], {}
    for i, est in enumerate(names):
        f, g = EVALS[est](L)
        sec = U * (f + g) * factor.get(est, 1.0)
        cost = Cost(sec, 0.02 * sec, 50, f_evals=f, grad_evals=g)
        arms.append(Arm(est, EstimatorSampler(est, problem, L, cost, clock, seed=seed * 100 + i)))
        theta[est] = var[est] * (sec if rank_by == "time" else f + g)
    res = race(arms, budget_s=budget, clock=clock, config=RaceConfig(rank_by=rank_by), truth=problem.exact.grads)
    return res, theta


def check_battery(outcomes: dict[str, list[dict]], total_alpha: float = ALPHA) -> str:
    """The validation criteria over a battery {config: [judge(...) per seed]}; returns the counts as text.

    Per configuration: the budget held in every run; where the best θ beats the next by >= 25%, the best picked
    in >= 95% of the seeds (19 of 20).  Over all runs: the fraction of runs with an error (wrong elimination,
    tie outside the tolerance, decided pick more than the tolerance worse than the best) <= the family-wise α."""
    lines, runs, errors = [], 0, 0
    for name, outs in outcomes.items():
        gap = outs[0]["gap"]
        picked = sum(o["picked_best"] for o in outs)
        err = sum(o["error"] for o in outs)
        runs, errors = runs + len(outs), errors + err
        lines.append(
            f"{name}: gap {gap:.3g}, picked best {picked}/{len(outs)}, decided {sum(o['decided'] for o in outs)}, "
            f"runs with an error {err} (wrong elimination {sum(bool(o['wrong']) for o in outs)}, "
            f"tie outside {sum(o['bad_tie'] for o in outs)}, pick outside {sum(o['bad_pick'] for o in outs)})"
        )
        assert all(o["budget_held"] for o in outs), f"{name}: budget not held"
        if gap >= 1.25:
            need = math.ceil(0.95 * len(outs))  # 19 of 20
            assert picked >= need, f"{name}: best picked in {picked}/{len(outs)} (< {need}); " + "; ".join(lines)
    text = "; ".join(lines) + f"; overall: {errors}/{runs} runs with an error"
    assert errors <= total_alpha * runs, text
    return text


FAST_SYNTHETIC = ["gap25-normal", "gap25-skewed", "close", "cost-skew"]
FAST_REAL = ["bern-all-time", "bern-noDis-evals", "gauss-evals"]


def test_synthetic_battery_fast() -> None:
    out = {
        f"{n}/{rb}": [judge(*run_synthetic(n, seed, rb), ALPHA) for seed in range(4)]
        for n in FAST_SYNTHETIC
        for rb in ("time", "evals")
    }
    check_battery(out)


def test_real_estimators_fast() -> None:
    out = {n: [judge(*run_real(n, seed), ALPHA) for seed in range(3)] for n in FAST_REAL}
    check_battery(out)


def test_the_validation_can_fail() -> None:
    """Power of the checks: an engine whose intervals are 10x too narrow makes errors (wrong eliminations, ties
    outside the tolerance) in far more than 5% of the runs on the same fast configurations, and is rejected."""
    real_vi = race_mod.variance_interval

    def narrow(v: np.ndarray, z: float, z_lower: float) -> dict:
        d = real_vi(v, z, z_lower)
        m = d["variance"]
        return {**d, "low": m - (m - d["low"]) / 10, "high": m + (d["high"] - m) / 10}

    race_mod.variance_interval = narrow  # type: ignore[assignment]
    try:
        out = {n: [judge(*run_synthetic(n, seed, "time"), ALPHA) for seed in range(6)] for n in ("near8", "close")}
    finally:
        race_mod.variance_interval = real_vi  # type: ignore[assignment]
    wrong = sum(bool(o["wrong"]) for outs in out.values() for o in outs)
    assert wrong >= 3, f"only {wrong} of 12 runs with a wrong elimination: the check has no power"
    with pytest.raises(AssertionError, match="runs with an error"):
        check_battery(out)


@pytest.mark.slow
def test_synthetic_battery_20_seeds() -> None:
    out = {
        f"{n}/{rb}": [judge(*run_synthetic(n, seed, rb), ALPHA) for seed in range(20)]
        for n in SYNTHETIC
        for rb in ("time", "evals")
    }
    print(check_battery(out))


@pytest.mark.slow
def test_real_estimators_20_seeds() -> None:
    out = {n: [judge(*run_real(n, seed), ALPHA) for seed in range(20)] for n in REAL}
    print(check_battery(out))
