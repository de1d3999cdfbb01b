"""Test fixtures of the race (harness.stats.race): a fake clock and synthetic arms of exactly known variance and cost.

Every draw advances the fake clock by what it would cost (per-call overhead + n × seconds × ``draw_factor``), so
budgets and rounds are checked by counting, never against the wall clock.  Noise kinds have unit variance
exactly: ``normal``; ``t5`` / ``t3`` (Student t scaled by sqrt((ν − 2)/ν): finite fourth moment for ν = 5,
infinite for ν = 3); ``exp`` (Exp(1) − 1: skewness 2); ``lognormal`` (σ = 1, standardized: kurtosis ≈ 111); ``pareto<a>`` (symmetric
Pareto tail of index a, e.g. ``pareto2.2``: unit variance for a > 2, infinite variance for a <= 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.stats.race import Arm, Cost, Draw, RaceResult

KINDS = ("normal", "t5", "t3", "exp", "lognormal", "pareto<a>")


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
    """Score one race against exact θ (in the raced currency): the best arm, its margin over the next, whether it
    was picked, the wrong eliminations (an arm eliminated by one whose exact θ is not smaller), wrongly declared
    ties, and whether the budget was held (spent <= budget × 1.1 + the last round's wall time)."""
    order = sorted(theta, key=theta.__getitem__)
    gap = theta[order[1]] / theta[order[0]] if len(order) > 1 and theta[order[0]] > 0 else math.inf
    wrong = [(a, by) for rec in result.rounds for a, by in rec.eliminated if theta[a] <= theta[by]]
    lim = 1 + result.level["tolerance"]
    bad_tie = result.pick is not None and any(not 1 / lim <= theta[t] / theta[result.pick] <= lim for t in result.ties)
    held = result.budget_s is None or result.spent_s <= 1.1 * result.budget_s + result.rounds[-1].wall_s
    return {
        "best": order[0],
        "gap": gap,
        "picked_best": result.pick == order[0],
        "wrong": wrong,
        "bad_tie": bad_tie,
        "budget_held": held and len(result.rounds) <= result.rounds_planned,
        "alpha": alpha,
    }
