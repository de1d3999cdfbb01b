"""Test fixtures of the race (harness.stats.race): a fake clock and synthetic arms of exactly known variance and cost.

Every draw advances the fake clock by what it would cost (per-call overhead + n × seconds × ``draw_factor``), so
budgets and rounds are checked by counting, never against the wall clock.  Noise kinds have unit variance
exactly: ``normal``; ``t5`` / ``t3`` (Student t scaled by sqrt((ν − 2)/ν): finite fourth moment for ν = 5,
infinite for ν = 3); ``exp`` (Exp(1) − 1: skewness 2); ``lognormal`` (σ = 1, standardized: kurtosis ≈ 111); ``pareto<a>`` (symmetric
Pareto tail of index a, e.g. ``pareto2.2``: unit variance for a > 2, infinite variance for a <= 2); ``spike<a>``
(N(0, 0.1²) with probability 0.98, else a Pareto(a) jump; unit variance, a > 2: a small body, the variance in
rare jumps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.stats.race import Arm, Cost, Draw, RaceResult

KINDS = ("normal", "t5", "t3", "exp", "lognormal", "pareto<a>", "spike<a>")


class FakeClock:
    """A clock that only moves when a fake sampler spends time."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def unit_noise(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """Noise of mean 0 and variance exactly 1."""
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind in ("t5", "t3"):
        nu = int(kind[1])
        return rng.standard_t(nu, shape) * math.sqrt((nu - 2) / nu)
    if kind == "exp":
        return rng.exponential(1.0, shape) - 1.0
    if kind.startswith("pareto"):  # symmetric Pareto tail of index a: unit variance for a > 2 (else infinite)
        a = float(kind[6:])
        scale = math.sqrt(a / (a - 2)) if a > 2 else 1.0
        return rng.choice([-1.0, 1.0], shape) * (1 + rng.pareto(a, shape)) / scale
    if kind.startswith("spike"):  # N(0, 0.1²) w.p. 0.98, else a Pareto(a) jump: heavy tail, small body
        a = float(kind[5:])
        c = math.sqrt((1 - 0.98 * 0.01) / (0.02 * a / (a - 2)))
        jump = rng.random(shape) < 0.02
        tail = rng.choice([-1.0, 1.0], shape) * c * (1 + rng.pareto(a, shape))
        return np.where(jump, tail, 0.1 * rng.standard_normal(shape))
    if kind == "lognormal":
        s2 = 1.0
        x = np.exp(rng.standard_normal(shape))
        return (x - math.exp(s2 / 2)) / math.sqrt((math.exp(s2) - 1) * math.exp(s2))
    raise ValueError(f"kind {kind!r}; valid: {KINDS}")


@dataclass
class SyntheticSampler:
    """Estimates mean + sqrt(variance)·noise on C independent coordinates: the race's ``variance`` is exactly
    ``variance``; θ_time = variance × seconds, θ_evals = variance × evals."""

    variance: float
    seconds: float
    evals: float
    clock: FakeClock
    seed: int
    C: int = 1
    kind: str = "normal"
    mean: float = 1.0
    overhead: float = 0.0  # fake seconds per draw call
    draw_factor: float = 1.0  # fake seconds per replicate in a draw / seconds per call
    rel_iqr: float = 0.02  # timing spread reported with the cost (relative IQR over 50 samples)
    calls: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def draw(self, n: int) -> Draw:
        self.calls.append(n)
        G = self.mean + math.sqrt(self.variance) * unit_noise(self.rng, self.kind, (n, self.C))
        self.clock.advance(self.overhead + n * self.seconds * self.draw_factor)
        cost = Cost(self.seconds, self.rel_iqr * self.seconds, 50, f_evals=self.evals)
        return Draw(G, cost)


@dataclass
class RetimingSampler(SyntheticSampler):
    """A synthetic arm that can be re-timed: its timing holds ``samples`` samples of ``sample_s`` fake seconds each
    with a fixed relative IQR, so the median's standard error shrinks as 1/sqrt(samples) when re-timing pools more;
    ``drift`` multiplies the median by (1 + drift) at every re-timing.  Every re-timing call is logged in ``log``
    (shared between arms: the interleaving order) and advances the fake clock by the seconds asked."""

    samples: int = 20
    sample_s: float = 0.01
    drift: float = 0.0
    log: list[str] = field(default_factory=list)
    name: str = ""

    def cost(self) -> Cost:
        return Cost(
            self.seconds,
            self.rel_iqr * self.seconds,
            self.samples,
            f_evals=self.evals,
            timing_s=self.samples * self.sample_s,
        )

    def draw(self, n: int) -> Draw:
        d = super().draw(n)
        return Draw(d.estimates, self.cost())

    def retime(self, seconds: float) -> Cost:
        self.log.append(self.name)
        self.samples += max(1, int(seconds / self.sample_s))
        self.seconds *= 1 + self.drift
        self.clock.advance(seconds)
        return self.cost()


def synthetic_arms(
    specs: list[dict], clock: FakeClock, seed: int, **common: object
) -> tuple[list[Arm], dict[str, dict[str, float]]]:
    """Arms from specs {name, variance, seconds, evals, [kind, C, unbiased, ...]} and their exact θ per currency."""
    arms, exact = [], {}
    for i, sp in enumerate(specs):
        sp = {**common, **sp}
        name, unbiased = sp.pop("name"), sp.pop("unbiased", True)
        sampler = SyntheticSampler(clock=clock, seed=seed * 1000 + i, **sp)  # type: ignore[arg-type]
        arms.append(Arm(name, sampler, unbiased=unbiased))
        v = float(sp["variance"])  # type: ignore[arg-type]
        exact[name] = {"time": v * float(sp["seconds"]), "evals": v * float(sp["evals"])}  # type: ignore[arg-type]
    return arms, exact


@dataclass
class EstimatorSampler:
    """A registered estimator on a problem, drawn through the one runner (``harness.measure.runner.estimate``) with
    a fresh seed per call; its cost is given (exact eval counts and a fake time per call that advances ``clock``)."""

    estimator: str
    problem: object
    L: int
    cost: Cost
    clock: FakeClock
    seed: int
    backend: str = "numpy"
    calls: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seeds = np.random.SeedSequence(self.seed)

    def draw(self, n: int) -> Draw:
        from harness.measure.runner import MeasureRequest, estimate
        from harness.registry import get_estimator

        self.calls.append(n)
        seed = int(self.seeds.spawn(1)[0].generate_state(1)[0])
        req = MeasureRequest(get_estimator(self.estimator, self.backend), self.problem, L=self.L, R=n, seed=seed)  # type: ignore[arg-type]
        G, _ = estimate(req)
        self.clock.advance(n * self.cost.seconds)
        return Draw(G, self.cost)


def judge(result: RaceResult, theta: dict[str, float], alpha: float) -> dict[str, Any]:
    """Score one race against exact θ (in the raced currency).  Errors the family-wise level covers: a wrong
    elimination (an arm eliminated by one whose exact θ is not smaller), a tie declared outside the tolerance, a
    decided pick more than the tolerance worse than the best.  Also: the best arm, its margin over the next,
    whether it was picked, and whether the budget was held (spent <= budget × 1.1 + the last round's wall time,
    rounds <= rounds planned)."""
    order = sorted(theta, key=theta.__getitem__)
    best = theta[order[0]]
    gap = theta[order[1]] / best if len(order) > 1 and best > 0 else math.inf
    lim = 1 + result.level["tolerance"]
    wrong = [(a, by) for rec in result.rounds for a, by in rec.eliminated if theta[a] <= theta[by]]
    pick = result.pick
    bad_tie = pick is not None and any(not 1 / lim <= theta[t] / theta[pick] <= lim for t in result.ties)
    bad_pick = result.decided and pick is not None and theta[pick] > lim * best
    held = result.budget_s is None or result.spent_s <= 1.1 * result.budget_s + result.rounds[-1].wall_s
    return {
        "best": order[0],
        "gap": gap,
        "picked_best": pick == order[0],
        "wrong": wrong,
        "bad_tie": bad_tie,
        "bad_pick": bad_pick,
        "error": bool(wrong) or bad_tie or bad_pick,
        "budget_held": held and len(result.rounds) <= result.rounds_planned,
        "decided": result.decided,
        "alpha": alpha,
    }


# -- the validation configurations (tests/test_race.py, suites/benchmarks/race_calibration.py) ----------------
# exact θ ratios (time) in list order; costs differ so that equal time and equal evaluations rank differently
SYNTHETIC: dict[str, list[dict]] = {
    "gap25-normal": [
        dict(name=f"a{i}", variance=t / s * 1e-4, seconds=s, evals=e, kind="normal")
        for i, (t, s, e) in enumerate(zip([1.0, 1.25, 2.0, 10.0], [2e-4, 1e-4, 4e-4, 1e-4], [4, 1, 2, 8]))
    ],
    "gap25-t5": [
        dict(name=f"a{i}", variance=t / s * 1e-4, seconds=s, evals=e, kind="t5")
        for i, (t, s, e) in enumerate(zip([1.0, 1.25, 2.0, 10.0], [2e-4, 1e-4, 4e-4, 1e-4], [4, 1, 2, 8]))
    ],
    "gap25-skewed": [
        dict(name=f"a{i}", variance=t / s * 1e-4, seconds=s, evals=e, kind="exp")
        for i, (t, s, e) in enumerate(zip([1.0, 1.25, 2.0, 10.0], [2e-4, 1e-4, 4e-4, 1e-4], [4, 1, 2, 8]))
    ],
    "close": [dict(name=f"a{i}", variance=r, seconds=1e-4, evals=2) for i, r in enumerate([1, 1.05, 1.1, 1.3])],
    "near8": [dict(name=f"a{i}", variance=1 + 0.02 * i, seconds=1e-4, evals=2, kind="exp") for i in range(8)],
    "many-C10": [
        dict(name=f"a{i}", variance=float(r), seconds=1e-4, evals=2, C=10, kind="t5")
        for i, r in enumerate(np.geomspace(1, 50, 10))
    ],
    "cost-skew": [
        dict(name="dear", variance=1 / 40, seconds=4e-3, evals=80),
        dict(name="cheap", variance=1.5, seconds=1e-4, evals=2),
        dict(name="mid", variance=0.2, seconds=1e-3, evals=20),
    ],
}


# a heavy-tailed arm (its tail flag has little power on few replicates) against a normal one: does the normal arm
# get eliminated although it is not worse?
HEAVY: dict[str, list[dict]] = {
    "pareto1.5-lowpoint": [
        dict(name="heavy", variance=1e-4, seconds=1e-4, evals=2, kind="pareto1.5"),  # infinite variance
        dict(name="normal", variance=1.0, seconds=1e-4, evals=2),
    ],
    "pareto2.2-equal": [
        dict(name="heavy", variance=1.0, seconds=1e-4, evals=2, kind="pareto2.2"),
        dict(name="normal", variance=1.0, seconds=1e-4, evals=2),
    ],
    "pareto2.2-worse1.5": [
        dict(name="heavy", variance=1.5, seconds=1e-4, evals=2, kind="pareto2.2"),
        dict(name="normal", variance=1.0, seconds=1e-4, evals=2),
    ],
    "t3-equal": [
        dict(name="heavy", variance=1.0, seconds=1e-4, evals=2, kind="t3"),
        dict(name="normal", variance=1.0, seconds=1e-4, evals=2),
    ],
    "exp-best": [  # light but skewed tails, truly best: must still be picked
        dict(name="heavy", variance=1.0, seconds=1e-4, evals=2, kind="exp"),
        dict(name="normal", variance=1.3, seconds=1e-4, evals=2),
    ],
    "t5-best": [
        dict(name="heavy", variance=1.0, seconds=1e-4, evals=2, kind="t5"),
        dict(name="normal", variance=1.3, seconds=1e-4, evals=2),
    ],
}


@dataclass
class SpikedSampler(RetimingSampler):
    """A re-timable arm whose first (quick) timing caught a load spike: its median reads ``spike`` times the true
    per-call time ``seconds``; re-timing pools samples at the true speed, and the pooled median is the true time
    once those are the majority (as a median of the pooled samples would be)."""

    spike: float = 1.0
    spiked: int = 0  # samples taken during the spike (the first timing's)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.spiked = self.samples

    def cost(self) -> Cost:
        c = super().cost()
        if self.samples >= 2 * self.spiked:
            return c
        return replace(c, seconds=self.spike * c.seconds, seconds_iqr=self.spike * c.seconds_iqr)
