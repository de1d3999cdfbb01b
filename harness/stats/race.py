r"""Racing engine of ``stochgrad recommend``: successive elimination of estimators at equal cost (pure statistics).

An *arm* is one estimator (with one hyperparameter point) on one target.  Its sampler draws n replicate
L-sample gradient estimates [n, C] and says what one estimate costs (:class:`Cost`: seconds per call with its
spread; objective and gradient evaluations).  The quantity raced is the **cost-normalised variance**

    θ = variance × cost per estimate,  cost = time per call ("time", the default) or f_evals + grad_evals ("evals"),

``variance`` being the results column (per-coordinate variance of one estimate, averaged over coordinates).
At equal cost the arm with the smallest θ gives the smallest variance: θ_i / θ_j is the factor by which j's
variance exceeds i's when both spend the same seconds (evaluations).

Rounds.  Round 1 (pilot) draws ``pilot`` replicates of every arm.  Every later round grows the cost spent by the
survivors by ``growth`` and gives each survivor the same share of it (equal cost: an arm half as dear gets
twice the replicates); with a budget the round is scaled to what is left, the last planned round takes all of
it, and a round that cannot fit in budget × (1 + ``budget_slack``) is not started.  After each round:

* every interval is made at family-wise level: α spent per round (``bonferroni``: α / rounds planned, the
  rounds the budget allows after the pilot; ``spending``: α/(k(k+1)), no plan needed), Bonferroni within the
  round over the intervals made (one θ interval per survivor, one factor interval per survivor against its
  group's leader);
* an arm is eliminated when its θ lower limit exceeds the smallest θ upper limit among valid arms with at least
  ``ref_min`` replicates (``ref``): whenever every interval covers, an eliminated arm is truly worse than the arm
  that eliminated it (``ref_min`` guards against heavy tails the tail test has not yet had the power to flag);
  at equal time an elimination by less than ``confirm_factor`` is confirmed first: the arm and ``ref`` are
  re-timed interleaved (once per arm) and both recomputed, because an arm's early θ rests on one quick timing
  and a drift of the machine's speed between two quick timings is not in their standard errors;
* it stops when one arm remains, when every survivor's factor to the leader has an interval inside
  [1/(1+tol), 1+tol] (a tie), when no survivor's factor has a lower limit below 1/(1+tol) (none can be more than
  the tolerance better: ``stop_within_tolerance``), when the budget is spent, or after the planned rounds.
  At equal time, when the per-call times' uncertainty (which more replicates do not shrink) is the larger part
  of every survivor's factor interval, the survivors are re-timed before the next round if their samplers can
  be (``retime``: round-robin slices so drift hits them alike, pooled with the earlier timing, at most
  ``max_retimes`` times, each at most ``retime_share`` of the budget left); when it is 4x the variances' part
  and they cannot be re-timed (any more), it stops, not decided ("time_limited").  A decided race whose runner-up factor is unbounded because of the times (a θ lower limit
  of 0) re-times the pick and the runner-up once for the report.
  Survivors flagged heavy-tailed on at least 2 × ``ref_min`` replicates whose point estimate is above the
  leader's upper limit do not hold a decision up (they cannot be picked, and their missing upper limit can keep them in the
  race for ever): they are reported as not comparable.

Intervals: the variance's comes from :func:`harness.stats.metrics.variance_interval` on per-replicate statistics
pooled over rounds (:func:`~harness.stats.metrics.replicate_variances`, centred per round), θ's from
:func:`~harness.stats.metrics.efficiency_interval` (time: combined with the time's standard error; evals: exact
counts, so the variance interval scaled), factors from :func:`~harness.stats.metrics.ratio_interval`.  Heavy
tails (the fourth moment may be infinite) leave a valid lower bound only: such an arm can be eliminated, but it
is never the reference, the leader, a tie or the pick.  A zero-variance (exact) arm is never eliminated and
beats every non-exact arm; exact arms tie with each other.  Biased arms race in their own group (never the
pick) and are reported with their measured bias (:func:`~harness.stats.metrics.bias_test` on round-robin batch
means, against ``truth`` when given, else against the pick); a declared-unbiased arm whose bias test rejects is
reported in a note, not dropped (declarations decide).  Oracle arms are not raced.  The runner-up is the next
smallest θ among the other unbiased arms (valid intervals first).  Algorithm, error control, validation and
measurements: docs/notes/recommend.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np

from harness.stats.metrics import (
    BIAS_ALPHA,
    VERDICT_BIASED,
    bias_test,
    bias_verdict,
    bonferroni_alpha,
    bonferroni_z,
    efficiency_interval,
    ratio_interval,
    replicate_variances,
    rounding_level,
    time_se,
    variance_interval,
)
from harness.stats.tails import TAIL_MIN_R

RANK_BY = ("time", "evals")
CORRECTIONS = ("bonferroni", "spending")
STOP_REASONS = ("one_left", "one_valid_left", "tied", "within_tolerance", "time_limited", "budget", "rounds", "no_arms")
DECIDED = ("one_left", "one_valid_left", "tied", "within_tolerance")


class RaceError(ValueError):
    """Bad arms or configuration (the message names the key and the valid choices)."""


@dataclass(frozen=True)
class Cost:
    """What one L-sample estimate costs: time per call (median, IQR and number of timing samples, the
    efficiency interval's inputs) and counted evaluations (f_evals + grad_evals is the "evals" cost)."""

    seconds: float = math.nan
    seconds_iqr: float = 0.0
    seconds_samples: int = 1
    f_evals: float = math.nan
    grad_evals: float = 0.0
    aux_evals: float = 0.0
    timing_s: float = 0.0  # seconds of timing samples behind ``seconds`` (sizes a re-timing; 0: unknown)

    @property
    def evals(self) -> float:
        return float(self.f_evals) + float(self.grad_evals)

    def unit(self, rank_by: str) -> float:
        """Cost per estimate in the currency ``rank_by`` ("time": seconds, "evals": evaluations)."""
        return float(self.seconds) if rank_by == "time" else self.evals


@dataclass
class Draw:
    """What a sampler returns: n estimates ([n, C] float array, or {param: [n, *shape]} concatenated in order)
    and the cost of one estimate."""

    estimates: Any
    cost: Cost


class ArmSampler(Protocol):
    """Draws n fresh, independent replicate estimates per call (the caller derives a new seed each call).

    A sampler may also offer ``retime(seconds) -> Cost``: time one call for about ``seconds`` more, pooled with its
    earlier timing samples, and return the pooled cost (what later draws report).  The race calls it on the
    survivors, interleaved, when the per-call times' uncertainty dominates their factor intervals and budget is
    left (:class:`RaceConfig`)."""

    def draw(self, n: int) -> Draw: ...


@dataclass(frozen=True)
class Arm:
    """One contestant: a name, its sampler (an :class:`ArmSampler` or a callable n -> Draw) and its declared
    properties (from the registry's declarations, never from the name).  ``info`` is carried to the result."""

    name: str
    sampler: ArmSampler | Callable[[int], Draw]
    unbiased: bool = True
    oracle: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)

    def draw(self, n: int) -> Draw:
        s = self.sampler
        return s.draw(n) if hasattr(s, "draw") else s(n)  # type: ignore[operator, union-attr]

    @property
    def can_retime(self) -> bool:
        return callable(getattr(self.sampler, "retime", None))

    def retime(self, seconds: float) -> Cost:
        return self.sampler.retime(seconds)  # type: ignore[union-attr]


@dataclass(frozen=True)
class RaceConfig:
    """How the race is run (defaults: docs/notes/recommend.md, where each is justified by measurement)."""

    rank_by: str = "time"
    alpha: float = 0.05  # family-wise error of all intervals made
    tolerance: float = 0.10  # survivors tied when every factor's interval lies in [1/(1+tol), 1+tol]
    stop_within_tolerance: bool = True  # also stop when no survivor's factor lower limit is below 1/(1+tol)
    correction: str = "bonferroni"
    pilot: int = 128  # replicates of every arm in round 1 (>= TAIL_MIN_R: the tail is assessed from round 1)
    ref_min: int = 512  # fewest replicates of an arm before its upper limit may eliminate others (heavy tails)
    min_round: int = 16  # fewest replicates of a survivor in a round (per-round centring needs a few)
    growth: float = 2.0  # cost of the survivors so far x growth after each round
    max_rounds: int = 12
    budget_slack: float = 0.10  # a round is started only if it is predicted to end within budget x (1 + slack)
    max_nonfinite: float = 1e-3  # an arm with a larger fraction of non-finite estimates is dropped
    bias_batches: int = 60  # round-robin batches kept per arm for the bias test (bias_test merges pairs: 30)
    rel_eps: float = 2.2e-16  # machine epsilon of the estimates' dtype: rounding-level variance counts as exact
    max_draw_elems: int = 1 << 24  # largest [n, C] asked of a sampler in one call (larger rounds are split)
    max_retimes: int = 3  # re-timings of the survivors when the per-call times dominate the factors' intervals
    retime_growth: float = 4.0  # a re-timing brings an arm's timing seconds to this many times what it had
    retime_share: float = 0.25  # ... but spends at most this share of the budget left (all survivors together)
    retime_min_s: float = 0.05  # ... and at least this many seconds per survivor
    retime_slices: int = 8  # survivors are timed round-robin in this many slices (drift hits them alike)
    confirm_factor: float = 2.0  # at equal time, an elimination by less than this factor (lower limit) is confirmed
    # first: the arm and its reference are re-timed interleaved (an early arm has one quick timing, which drift of
    # the machine's speed can move by more than its own standard error says); 1 turns confirmation off

    def __post_init__(self) -> None:
        checks = (
            ("rank_by", self.rank_by in RANK_BY, f"one of {list(RANK_BY)}"),
            ("correction", self.correction in CORRECTIONS, f"one of {list(CORRECTIONS)}"),
            ("alpha", 0 < self.alpha < 1, "in (0, 1)"),
            ("tolerance", self.tolerance >= 0, ">= 0"),
            ("pilot", self.pilot >= TAIL_MIN_R, f"an integer >= {TAIL_MIN_R}"),
            ("ref_min", self.ref_min >= 2, "an integer >= 2"),
            ("min_round", self.min_round >= 2, "an integer >= 2"),
            ("growth", self.growth > 1, "> 1"),
            ("max_rounds", self.max_rounds >= 1, "an integer >= 1"),
            ("budget_slack", self.budget_slack >= 0, ">= 0"),
            ("max_nonfinite", 0 <= self.max_nonfinite < 1, "in [0, 1)"),
            ("bias_batches", self.bias_batches >= 4 and self.bias_batches % 2 == 0, "an even integer >= 4"),
            ("max_retimes", self.max_retimes >= 0, "an integer >= 0"),
            ("retime_growth", self.retime_growth > 1, "> 1"),
            ("retime_share", 0 < self.retime_share < 1, "in (0, 1)"),
            ("retime_min_s", self.retime_min_s > 0, "> 0"),
            ("retime_slices", self.retime_slices >= 1, "an integer >= 1"),
            ("confirm_factor", self.confirm_factor >= 1, ">= 1 (1: no confirmation)"),
        )
        for key, ok, valid in checks:
            if not ok:
                raise RaceError(f"race config: {key} = {getattr(self, key)!r}; valid: {valid}")

    def z(self, round_index: int, rounds_planned: int, n_intervals: int) -> tuple[float, float]:
        """(α spent in this round, two-sided critical value of each of its ``n_intervals`` intervals)."""
        k = round_index
        a = self.alpha / rounds_planned if self.correction == "bonferroni" else self.alpha / (k * (k + 1))
        return a, bonferroni_z(n_intervals, 1 - a)


def flatten(estimates: Any, n: int | None, who: str) -> np.ndarray:
    """A draw's estimates as a float64 [n, C] array (a mapping's values concatenated in order); n = None: one
    unbatched vector (the truth) as [1, C]."""
    if n is None:
        if isinstance(estimates, Mapping):
            return np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in estimates.values()])[None]
        return np.asarray(estimates, dtype=np.float64).reshape(1, -1)
    if isinstance(estimates, Mapping):
        parts = [np.asarray(x, dtype=np.float64) for x in estimates.values()]
        if not parts or any(p.ndim == 0 or p.shape[0] != n for p in parts):
            raise RaceError(f"arm {who!r}: draw({n}) returned {len(parts)} arrays; each must be [n, *shape]")
        return np.concatenate([p.reshape(n, -1) for p in parts], axis=1)
    G = np.asarray(estimates, dtype=np.float64)
    if G.ndim == 0 or G.shape[0] != n:
        raise RaceError(f"arm {who!r}: draw({n}) returned shape {list(G.shape)}; expected [n, C] with n = {n}")
    return G.reshape(n, -1)


class ArmState:
    """The engine's running record of one arm: pooled per-replicate variance statistics, coordinate sums,
    round-robin batch sums (bias test), the latest cost, wall time and its place in the race."""

    def __init__(self, arm: Arm, cfg: RaceConfig) -> None:
        self.arm, self.cfg = arm, cfg
        self.v_parts: list[np.ndarray] = []
        self.n = self.n_bad = 0
        self.total: np.ndarray | None = None
        self.bsum: np.ndarray | None = None
        self.bcnt: np.ndarray | None = None
        self.cost: Cost | None = None
        self.wall = 0.0
        self.rate = math.nan  # wall seconds per replicate of the latest round
        self.status = "alive"  # alive | eliminated | dropped
        self.out_round: int | None = None
        self.out_by: str | None = None
        self.reason = ""
        self.stats: dict[str, Any] = {}
        self.confirmed = False  # re-timed with its reference before an elimination at equal time

    @property
    def name(self) -> str:
        return self.arm.name

    @property
    def group(self) -> str:
        return "unbiased" if self.arm.unbiased else "biased"

    @property
    def alive(self) -> bool:
        return self.status == "alive"

    def v(self) -> np.ndarray:
        if len(self.v_parts) > 1:
            self.v_parts = [np.concatenate(self.v_parts)]
        return self.v_parts[0] if self.v_parts else np.zeros(0)

    def drop(self, reason: str, round_index: int) -> None:
        self.status, self.reason, self.out_round = "dropped", reason, round_index

    def add(self, G: np.ndarray, cost: Cost) -> None:
        """Pool one chunk of estimates: rows with a non-finite value are counted and left out."""
        ok = np.all(np.isfinite(G), axis=1)
        self.n_bad += int(G.shape[0] - ok.sum())
        G = G[ok]
        self.cost = cost
        if G.shape[0] < 2:
            return
        if self.total is None:
            C = G.shape[1]
            B = self.cfg.bias_batches
            self.total, self.bsum, self.bcnt = np.zeros(C), np.zeros((B, C)), np.zeros(B)
        elif G.shape[1] != self.total.shape[0]:
            raise RaceError(f"arm {self.name!r}: draws of {G.shape[1]} and {self.total.shape[0]} coordinates")
        self.v_parts.append(replicate_variances(G))
        self.total += G.sum(0)
        self._add_batches(G)
        self.n += G.shape[0]

    def _add_batches(self, G: np.ndarray) -> None:
        """Row r of the arm's pooled estimates goes to batch r mod B (equal batch sizes up to one)."""
        assert self.bsum is not None and self.bcnt is not None
        B, C = self.bsum.shape
        s, n = self.n % B, G.shape[0]
        h = min((B - s) % B, n)
        self.bsum[s : s + h] += G[:h]
        self.bcnt[s : s + h] += 1
        rest = G[h:]
        full = rest.shape[0] // B * B
        if full:
            self.bsum += rest[:full].reshape(-1, B, C).sum(0)
            self.bcnt += full // B
        t = rest.shape[0] - full
        self.bsum[:t] += rest[full:]
        self.bcnt[:t] += 1

    def mean(self) -> np.ndarray:
        assert self.total is not None
        return self.total / max(self.n, 1)

    def batch_means(self) -> np.ndarray | None:
        if self.bsum is None or self.bcnt is None or not np.all(self.bcnt > 0):
            return None
        return self.bsum / self.bcnt[:, None]

    def compute(self, z: float, truth: np.ndarray | None) -> dict[str, Any]:
        """Variance and θ (time, evals) intervals at critical value ``z``; ``exact`` for rounding-level variance."""
        if self.n < 2 or self.cost is None:
            self.stats = {"ready": False, "valid": False, "exact": False}
            return self.stats
        vi = variance_interval(self.v(), z, NormalDist().cdf(z))  # the one-sided bound at the same level
        c = self.cost
        var, lo, hi = vi["variance"], vi["low"], vi["high"]
        t = efficiency_interval(var, lo, hi, c.seconds, c.seconds_iqr, c.seconds_samples, z)
        e = efficiency_interval(var, lo, hi, c.evals, 0.0, 1, z)
        scale = float(np.mean(np.abs(self.mean())))
        if truth is not None:
            scale += float(np.mean(np.abs(truth)))
        exact = bool(vi["valid"] and hi <= rounding_level(self.cfg.rel_eps, 0.0, scale) ** 2 + 1e-30)
        self.stats = {
            **vi,
            "ready": self.n >= max(TAIL_MIN_R, self.cfg.pilot // 2),
            "exact": exact,
            "time": tuple(float(x) for x in t),
            "evals": tuple(float(x) for x in e),
        }
        return self.stats

    def theta(self, rank_by: str) -> tuple[float, float, float]:
        return self.stats.get(rank_by, (math.nan,) * 3)


@dataclass
class RoundRecord:
    """One round: its level, leader and survivors after its decisions, eliminations (arm, by) and replicates."""

    round: int
    alpha: float
    z: float
    leader: str | None
    survivors: list[str]
    eliminated: list[tuple[str, str]]
    replicates: dict[str, int]
    wall_s: float
    spent_s: float
    biased_leader: str | None = None
    retimed: list[str] = field(default_factory=list)  # survivors re-timed before this round's draws
    retime_s: float = 0.0  # wall seconds of that re-timing
    confirmed: list[str] = field(default_factory=list)  # arms (and their reference) re-timed to confirm eliminations
    budget_s: float | None = None  # the race's budget (progress displays show spent / budget)


@dataclass
class Factor:
    """θ of ``name`` over θ of ``versus`` in currency ``measure``, with its interval (family-wise level)."""

    name: str
    versus: str
    measure: str
    factor: float
    low: float
    high: float


@dataclass
class RaceResult:
    """The outcome: the pick, the runner-up's factors at equal time and at equal evaluations, ties, the round
    each arm went, the rounds, the spent budget and every arm's summary.  :meth:`to_dict` is JSON-able."""

    pick: str | None
    pick_note: str
    rank_by: str
    stop_reason: str
    decided: bool
    runner_up: str | None
    factors: dict[str, Factor | None]
    ties: list[str]
    unresolved: list[str]
    close: list[str]
    worse: list[str]
    not_comparable: list[str]
    eliminated: dict[str, int]
    rounds: list[RoundRecord]
    rounds_planned: int
    budget_s: float | None
    spent_s: float
    arms: dict[str, dict[str, Any]]
    biased_leader: str | None
    excluded: dict[str, str]
    leaders: dict[str, str | None]
    level: dict[str, Any]
    retimed: list[dict[str, Any]] = field(default_factory=list)  # {round, arms, seconds}: survivors re-timed

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def text(self) -> str:
        """A short human-readable account (what the CLI prints without --json)."""
        cur = {"time": "equal time", "evals": "equal evaluations"}
        lines = [
            f"pick: {self.pick or '—'}  (at {cur[self.rank_by]}; {_STOP_TEXT[self.stop_reason]}"
            f"{'' if self.decided else ', not decided'}; {len(self.rounds)} rounds)"
        ]
        if self.pick_note:
            lines.append(f"  note: {self.pick_note}")
        if self.runner_up:
            parts = [
                f"×∞ at {cur[m]} (the pick has zero variance)"
                if math.isinf(f.factor)
                else f"×{_g(f.factor)} [{_g(f.low)}, {_g(f.high)}] at {cur[m]}"
                for m, f in self.factors.items()
                if f is not None and not math.isnan(f.factor)
            ]
            lines.append(f"runner-up: {self.runner_up}  " + ", ".join(parts))
        for m, who in self.leaders.items():
            if who and who != self.pick and m != self.rank_by:
                label = "equal L (samples)" if m == "samples" else cur[m]
                lines.append(f"  lowest point estimate at {label}: {who}")
        if self.ties:
            lines.append(f"tied with the pick (within {self.level['tolerance']:.0%}): {', '.join(self.ties)}")
        if self.close:
            tol = self.level["tolerance"]
            lines.append(f"not separated, but none more than {tol:.0%} better than the pick: {', '.join(self.close)}")
        far = [n for n in self.unresolved if n not in self.close]
        if far:
            lines.append(f"not separated from the pick: {', '.join(far)}")
        if self.worse:
            lines.append(f"worse than the pick (factor interval above 1), still in the race: {', '.join(self.worse)}")
        for n in self.not_comparable:
            a, f = self.arms[n], self.arms[self.pick][self.rank_by]["value"] if self.pick else math.nan
            rel = a[self.rank_by]["value"] / f if f and math.isfinite(f) else math.nan
            lo = a[self.rank_by]["low"] / f if f and math.isfinite(f) else math.nan
            lines.append(
                f"not comparable ({a['heavy_tail'] or 'no valid interval'}: no upper limit): {n}, point estimate "
                f"×{_g(rel)} the pick's, lower limit ×{_g(lo)}"
            )
        if self.eliminated:
            lines.append("eliminated: " + ", ".join(f"{n} (round {r})" for n, r in self.eliminated.items()))
        biased = [a for a in self.arms.values() if not a["unbiased"]]
        for a in biased:
            lines.append(f"biased (never the pick): {a['name']}  bias {_g(a['bias'])} (p = {_g(a['bias_p'])})")
        for n, why in self.excluded.items():
            lines.append(f"not raced: {n} ({why})")
        for r in self.retimed:
            when = {
                "decision": f"before round {r['round']}",
                "confirm": f"in round {r['round']}, to confirm eliminations at equal time",
            }.get(r["for"], "after the decision, for the factor")
            lines.append(
                f"re-timed per-call times {when} (interleaved, pooled with the earlier timing; {_g(r['seconds'])} "
                f"s): {', '.join(r['arms'])}"
            )
        budget = f" of {_g(self.budget_s)} s" if self.budget_s else ""
        lines.append(f"spent {_g(self.spent_s)} s{budget}")
        return "\n".join(lines)


_STOP_TEXT = {
    "one_left": "one left",
    "one_valid_left": "one left with a valid interval",
    "tied": "survivors tied",
    "within_tolerance": "no survivor more than the tolerance better",
    "time_limited": "per-call times too imprecise to separate the survivors (a larger budget re-times them longer; "
    "or rank by evals)",
    "budget": "budget spent",
    "rounds": "planned rounds done",
    "no_arms": "no arm to race",
}


def _g(x: Any) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# -- the race ----------------------------------------------------------------------------------------------------
class Race:
    """One race over ``arms`` (see the module docstring); :meth:`run` returns the :class:`RaceResult`."""

    def __init__(
        self,
        arms: Sequence[Arm],
        *,
        budget_s: float | None = None,
        config: RaceConfig | None = None,
        truth: Any = None,
        clock: Callable[[], float] = time.perf_counter,
        progress: Callable[[RoundRecord], None] | None = None,
    ) -> None:
        self.cfg = config or RaceConfig()
        names = [a.name for a in arms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise RaceError(f"arms: duplicate names {dup}")
        if budget_s is not None and not (budget_s > 0):
            raise RaceError(f"budget_s = {budget_s!r}; valid: a positive number of seconds or None")
        self.budget = budget_s
        self.truth = None if truth is None else flatten(truth, None, "truth")[0]
        self.clock, self.progress = clock, progress
        self.excluded = {a.name: "oracle: uses the exact answer" for a in arms if a.oracle}
        self.states = [ArmState(a, self.cfg) for a in arms if not a.oracle]
        self.records: list[RoundRecord] = []
        self.rounds_planned = self.cfg.max_rounds
        self.t0 = 0.0
        self.z_now = math.nan
        self.primary = "unbiased"
        self.retimes: list[dict[str, Any]] = []

    # -- drawing ---------------------------------------------------------------------------------------------------
    def _draw(self, s: ArmState, n: int, k: int) -> int:
        """Draw n replicates of arm ``s`` (split so no call exceeds max_draw_elems); returns the rows drawn."""
        done, wall = 0, 0.0
        C = None if s.total is None else s.total.shape[0]
        while done < n and s.alive and not (k > 1 and done and self._over()):
            size = n - done if C is None else min(n - done, max(self.cfg.min_round, self.cfg.max_draw_elems // C))
            t = self.clock()
            try:
                d = s.arm.draw(size)
                G = flatten(d.estimates, size, s.name)
                s.add(G, d.cost)
            except Exception as exc:  # one failing estimator does not end the race: it is dropped, with why
                s.drop(f"error: {type(exc).__name__}: {exc}", k)
            wall += self.clock() - t
            done += size
            C = None if s.total is None else s.total.shape[0]
        s.wall += wall
        s.rate = wall / max(done, 1)
        if s.alive:
            drawn = s.n + s.n_bad
            if s.n_bad > self.cfg.max_nonfinite * drawn:
                s.drop(f"non-finite estimates in {s.n_bad} of {drawn} replicates", k)
            elif s.cost is None or not s.cost.unit(self.cfg.rank_by) > 0:
                unit = "seconds per call" if self.cfg.rank_by == "time" else "f_evals + grad_evals"
                s.drop(f"no cost to rank by {self.cfg.rank_by!r} ({unit} must be > 0)", k)
        return done

    def _over(self) -> bool:
        """Whether the budget with its slack is spent: a round that runs past it (the machine slowed down after its
        rates were measured) stops drawing — between arms and between an arm's chunks — and is decided on what it
        drew (pooled statistics need no equal shares)."""
        b = self.budget
        return b is not None and self.clock() - self.t0 > b * (1 + self.cfg.budget_slack)

    def _plan(self, k: int, spent: float) -> dict[ArmState, int] | None:
        """Replicates per survivor for round k (equal cost shares), or None when the budget cannot fit it."""
        alive = [s for s in self.states if s.alive]
        unit = {s: s.cost.unit(self.cfg.rank_by) for s in alive if s.cost is not None}
        q_cum = sum(unit[s] * s.n for s in alive)
        share = (self.cfg.growth - 1) * q_cum / len(alive)
        n = {s: max(self.cfg.min_round, math.ceil(share / unit[s])) for s in alive}
        if self.budget is None:
            return n
        remaining = self.budget - spent
        if remaining <= 0:
            return None
        pred = sum(n[s] * s.rate for s in alive)
        if pred > 0 and (k >= self.rounds_planned or pred > remaining / 2):
            f = remaining / pred  # the last round (or one leaving less than itself) takes what is left
            n = {s: max(self.cfg.min_round, math.floor(n[s] * f)) for s in alive}
            pred = sum(n[s] * s.rate for s in alive)
        if spent + pred > self.budget * (1 + self.cfg.budget_slack):
            return None
        return n

    def _plan_rounds(self, spent: float) -> int:
        """Rounds planned after the pilot: the pilot plus the rounds of cumulative growth the budget allows."""
        if self.budget is None or spent <= 0:
            return self.cfg.max_rounds
        if spent >= self.budget:
            return 1
        more = math.ceil(math.log(self.budget / spent) / math.log(self.cfg.growth))
        return int(min(self.cfg.max_rounds, 1 + max(more, 1)))

    # -- deciding --------------------------------------------------------------------------------------------------
    def _group(self, name: str) -> list[ArmState]:
        return [s for s in self.states if s.alive and s.group == name]

    def _ratio(self, a: ArmState, b: ArmState, measure: str) -> tuple[float, float, float]:
        """θ_a / θ_b with its interval; exact arms: 1 between exact arms, inf over an exact b."""
        if a.stats["exact"] and b.stats["exact"]:
            return 1.0, 1.0, 1.0
        if b.stats["exact"]:
            return math.inf, math.inf, math.inf
        r, lo, hi = ratio_interval(*a.theta(measure), *b.theta(measure))
        return float(r), float(lo), float(hi)

    def _by(self, name: str) -> ArmState:
        return next(s for s in self.states if s.name == name)

    def _leader(self, group: list[ArmState]) -> ArmState | None:
        """The live leader: an exact arm (the cheapest), else the valid arm with the smallest θ."""
        rb = self.cfg.rank_by
        valid = [s for s in group if s.stats.get("ready") and s.stats["valid"]]
        exact = [s for s in valid if s.stats["exact"]]
        if exact:
            return min(exact, key=lambda s: s.cost.unit(rb) if s.cost else math.inf)
        return min(valid, key=lambda s: s.theta(rb)[0]) if valid else None

    def _decide(self, group: list[ArmState], k: int) -> tuple[list[tuple[str, str]], ArmState | None, str]:
        """Eliminations in one group at round k, then its leader and whether it is resolved: "tied" (every
        survivor's factor interval inside [1/(1+tol), 1+tol]), "within_tolerance" (every lower limit >= 1/(1+tol))
        or "one_valid_left".  Survivors flagged heavy-tailed on at least 2 × ref_min replicates whose point estimate
        is above the leader's upper limit cannot be the pick nor be compared: they do not hold a resolution up
        (reported as not comparable).  Resolutions need a leader trusted as a reference (ref_min replicates)."""
        rb = self.cfg.rank_by
        ready = [s for s in group if s.stats.get("ready")]
        valid = [s for s in ready if s.stats["valid"]]
        out: list[tuple[str, str]] = []
        ref = self._reference(valid)
        if ref is not None:
            for s in self._worse(ready, ref):
                s.status, s.out_round, s.out_by = "eliminated", k, ref.name
                out.append((s.name, ref.name))
        alive = [s for s in group if s.alive]
        leader = self._leader(alive)
        # flagged arms whose point estimate (which heavy tails bias low) is above the leader's upper limit do not
        # hold a resolution up; one that may be better does (the race goes on: its flag may be spurious)
        top = leader.theta(rb)[2] if leader is not None else math.inf
        heavy = [
            s
            for s in alive
            if s.stats.get("ready") and not s.stats["valid"] and s.n >= 2 * self.cfg.ref_min and s.theta(rb)[0] > top
        ]
        comparable = [s for s in alive if s not in heavy]
        resolved = ""
        trusted = leader is not None and (leader.n >= self.cfg.ref_min or leader.stats["exact"])  # as a ref
        if trusted and all(s.stats.get("ready") and s.stats["valid"] for s in comparable):
            lim = 1 + self.cfg.tolerance
            ratios = [self._ratio(s, leader, rb) for s in comparable if s is not leader]
            if len(comparable) == 1 and heavy:
                resolved = "one_valid_left"
            elif ratios and all(1 / lim <= lo and hi <= lim for _, lo, hi in ratios):
                resolved = "tied"
            elif ratios and self.cfg.stop_within_tolerance and all(1 / lim <= lo for _, lo, _ in ratios):
                resolved = "within_tolerance"  # no survivor can be more than tol better than the leader
            elif rb == "time" and all(self._time_limited(s, leader, 1.0) for s in comparable if s is not leader):
                # the per-call times' uncertainty dominates every factor interval: re-timing shrinks them more than
                # replicates ("time_dominated", not a stop); once it is 4x the variance part, more replicates cannot
                # resolve them at all ("time_limited": a stop unless the survivors can be re-timed)
                limited = all(self._time_limited(s, leader) for s in comparable if s is not leader)
                resolved = "time_limited" if limited else "time_dominated"
        return out, leader, resolved

    def _reference(self, valid: list[ArmState]) -> ArmState | None:
        """The arm whose upper limit eliminates others: the smallest θ upper limit among valid arms with at least
        ``ref_min`` replicates (or exact)."""
        refs = [s for s in valid if s.n >= self.cfg.ref_min or s.stats["exact"]]
        return min(refs, key=lambda s: s.theta(self.cfg.rank_by)[2]) if refs else None

    def _worse(self, ready: list[ArmState], ref: ArmState) -> list[ArmState]:
        """The arms ``ref`` eliminates: θ lower limit above its upper limit (never an exact arm)."""
        ucl = ref.theta(self.cfg.rank_by)[2]
        return [s for s in ready if s is not ref and not s.stats["exact"] and s.theta(self.cfg.rank_by)[1] > ucl]

    def _confirm(self, group: list[ArmState], k: int) -> list[str]:
        """At equal time, before eliminating an arm by less than ``confirm_factor`` (its θ lower limit over the
        reference's upper limit), re-time it and its reference interleaved, once per arm, and recompute both: an
        arm's early θ rests on one quick timing, and a drift of the machine's speed between two quick timings is
        not in their standard errors.  Clear eliminations (by more) and arms that cannot be re-timed, or too little
        budget, are decided as they are.  Returns the arms re-timed."""
        cfg = self.cfg
        if cfg.rank_by != "time" or cfg.confirm_factor <= 1:
            return []
        ready = [s for s in group if s.stats.get("ready")]
        ref = self._reference([s for s in ready if s.stats["valid"]])
        if ref is None or ref.stats["exact"] or not ref.arm.can_retime:
            return []
        bar = cfg.confirm_factor * ref.theta("time")[2]
        doubt = [
            s for s in self._worse(ready, ref) if not s.confirmed and s.arm.can_retime and s.theta("time")[1] < bar
        ]
        plan = self._retime_sizes([ref, *doubt]) if doubt else None
        if plan is None:
            return []
        self._retime(plan, k)["for"] = "confirm"
        for s in doubt:
            s.confirmed = True
        for s in plan:
            if s.alive:
                s.compute(self.z_now, self.truth)
        return [s.name for s in plan]

    def _time_limited(self, s: ArmState, leader: ArmState, share: float = 0.25) -> bool:
        """Whether the factor interval of s to the leader at equal time is dominated by the per-call times'
        uncertainty (which replicates do not shrink): the variance parts' relative half-widths combined are below
        ``share`` × the time parts' combined."""

        def parts(a: ArmState) -> tuple[float, float]:
            c, st = a.cost, a.stats
            assert c is not None
            rt = float(self.z_now * time_se(c.seconds, c.seconds_iqr, c.seconds_samples) / c.seconds)
            rv = st["high"] / st["variance"] - 1 if st["variance"] > 0 else 0.0
            return rv, rt

        (vs, ts), (vl, tl) = parts(s), parts(leader)
        return math.hypot(ts, tl) > 0 and math.hypot(vs, vl) < share * math.hypot(ts, tl)

    def _retime_plan(self, k: int) -> dict[ArmState, float] | None:
        """Seconds of re-timing per survivor of the primary group before round k + 1, or None when it cannot be
        done: a sampler without ``retime``, ``max_retimes`` reached, no round left, or too little budget left."""
        cfg = self.cfg
        alive = self._group(self.primary)
        if (
            cfg.rank_by != "time"
            or sum(r["for"] == "decision" for r in self.retimes) >= cfg.max_retimes
            or k >= self.rounds_planned
            or not alive
            or not all(s.arm.can_retime for s in alive)
        ):
            return None
        return self._retime_sizes(alive)

    def _retime_sizes(self, arms: list[ArmState]) -> dict[ArmState, float] | None:
        """Seconds of re-timing per arm: ``retime_growth`` - 1 times the timing seconds it has (at least
        ``retime_min_s``), all together at most ``retime_share`` of the budget left (None: not even the minimum)."""
        cfg = self.cfg
        want = {a: max(cfg.retime_min_s, (cfg.retime_growth - 1) * (a.cost.timing_s if a.cost else 0.0)) for a in arms}
        if self.budget is not None:
            cap = cfg.retime_share * (self.budget - (self.clock() - self.t0))
            if cap < cfg.retime_min_s * len(arms):
                return None
            f = min(1.0, cap / sum(want.values()))
            want = {a: w * f for a, w in want.items()}
        return want

    def _retime(self, plan: dict[ArmState, float], k: int) -> dict[str, Any]:
        """Re-time the survivors round-robin in ``retime_slices`` slices (the order rotates each slice), so drift of
        the machine's speed during the re-timing hits every survivor alike; each pools with its earlier timing."""
        t0 = self.clock()
        order = list(plan)
        n = self.cfg.retime_slices
        for j in range(n):
            for s in order[j % len(order) :] + order[: j % len(order)]:
                if s.status == "dropped":
                    continue
                try:
                    s.cost = s.arm.retime(plan[s] / n)
                except Exception as exc:  # as a failing draw: the arm is dropped, with why
                    s.drop(f"error while re-timing: {type(exc).__name__}: {exc}", k)
        rec = {"round": k, "arms": [s.name for s in order], "seconds": self.clock() - t0, "for": "decision"}
        self.retimes.append(rec)
        return rec

    def run(self) -> RaceResult:
        cfg = self.cfg
        self.t0 = self.clock()
        primary = "unbiased" if any(s.group == "unbiased" for s in self.states) else "biased"
        self.primary = primary
        sizes = {s: cfg.pilot for s in self.states}
        stop, k = "no_arms", 0
        retime: dict[ArmState, float] | None = None
        while sizes:
            k += 1
            t_round = self.clock()
            done = self._retime(retime, k) if retime else None
            retime = None
            # the pilot draws every arm; a later round stops drawing once the budget with its slack is spent
            drawn = {s.name: self._draw(s, n, k) for s, n in sizes.items() if s.alive and (k == 1 or not self._over())}
            spent = self.clock() - self.t0
            if k == 1:
                self.rounds_planned = self._plan_rounds(spent)
            groups = {g: self._group(g) for g in ("unbiased", "biased")}
            m = sum(len(g) + max(len(g) - 1, 0) for g in groups.values())
            alpha_k, z = cfg.z(k, self.rounds_planned, max(m, 1))
            self.z_now = z
            for s in self.states:
                if s.alive:
                    s.compute(z, self.truth)
            out: list[tuple[str, str]] = []
            leaders: dict[str, ArmState | None] = {}
            resolved: dict[str, str] = {}
            confirmed: list[str] = []
            for g, members in groups.items():
                confirmed += self._confirm(members, k)
                o, leaders[g], resolved[g] = self._decide(members, k)
                out += o
            survivors = [s.name for s in self._group(primary)]
            rec = RoundRecord(
                k,
                alpha_k,
                z,
                leaders[primary].name if leaders[primary] else None,
                survivors,
                out,
                drawn,
                self.clock() - t_round,
                spent,
                leaders["biased"].name if primary == "unbiased" and leaders["biased"] else None,
                retimed=list(done["arms"]) if done else [],
                retime_s=done["seconds"] if done else 0.0,
                confirmed=confirmed,
                budget_s=self.budget,
            )
            self.records.append(rec)
            if self.progress is not None:
                self.progress(rec)
            if not survivors:
                stop = "no_arms"
                break
            if len(survivors) == 1:
                stop = "one_left"
                break
            limited = resolved[primary] == "time_limited"
            if resolved[primary] in ("time_limited", "time_dominated"):
                # the per-call times limit the decision: re-time the survivors (if they can be) and go on
                retime = self._retime_plan(k)
                if retime is None and limited:
                    stop = "time_limited"
                    break
            elif resolved[primary]:
                stop = resolved[primary]
                break
            if k >= self.rounds_planned:
                stop = "rounds"
                break
            plan = self._plan(k + 1, self.clock() - self.t0 + (sum(retime.values()) if retime else 0.0))
            if plan is None:
                stop = "time_limited" if retime and limited else "budget"
                break
            sizes = plan
        if self.records and stop in DECIDED and cfg.max_retimes > 0:
            self._retime_for_report()
        return self._result(stop, primary)

    # -- the result -----------------------------------------------------------------------------------------------
    def _bias(self, s: ArmState, ref: ArmState | None, n_family: int) -> dict[str, Any]:
        """Measured bias (RMS over coordinates) against the truth, else against ``ref``'s mean (the pick's)."""
        none = {"bias": math.nan, "bias_p": math.nan, "bias_verdict": "", "bias_detected": False, "bias_against": ""}
        bm = s.batch_means()
        if bm is None:
            return none
        if self.truth is not None and self.truth.shape[0] == bm.shape[1]:
            t = bias_test(bm, self.truth, self.cfg.rel_eps, batches=bm.shape[0])
            d, against = s.mean() - self.truth, "truth"
        elif ref is not None and ref is not s and ref.batch_means() is not None:
            rm = ref.batch_means()
            assert rm is not None
            t = bias_test(bm - rm, np.zeros(bm.shape[1]), self.cfg.rel_eps, batches=bm.shape[0])
            d, against = s.mean() - ref.mean(), ref.name
        else:
            return none
        # the batch means hide the replicates' tails, so the test is judged on the arm's own tail evidence: a valid
        # (two-sided) variance interval means evidence of a finite fourth moment on both sides, where the test
        # holds its level (harness.stats.metrics.judged_directions); otherwise a rejection reads "cannot judge"
        judged = t["bias_p"] if s.stats.get("valid") else 1.0
        verdict = str(bias_verdict(t["bias_p"], judged, bonferroni_alpha(BIAS_ALPHA, n_family)))
        return {
            "bias": float(np.sqrt(np.mean(d * d))),
            "bias_p": t["bias_p"],
            "bias_verdict": verdict,
            "bias_detected": verdict == VERDICT_BIASED,
            "bias_against": against,
        }

    def _pick_and_runner(self, primary: str) -> tuple[ArmState | None, ArmState | None]:
        """The pick (the leader of the valid unbiased survivors) and the runner-up: the next smallest θ among the
        other unbiased arms, heavy-tailed ones included (their factor has a lower limit only: at least that much
        worse)."""
        rb = self.cfg.rank_by
        unb = [s for s in self.states if s.status != "dropped" and s.stats.get("valid") and s.group == "unbiased"]
        pick = self._leader([s for s in unb if s.alive]) if primary == "unbiased" else None
        rest = [
            s
            for s in self.states
            if s.group == "unbiased" and s is not pick and s.status != "dropped" and s.stats.get("ready")
        ]
        rest = [s for s in rest if math.isfinite(s.theta(rb)[0])]
        runner = min(rest, key=lambda s: (not s.stats["valid"], s.theta(rb)[0])) if rest and pick else None
        return pick, runner

    def _retime_for_report(self) -> None:
        """When a decided race's runner-up factor at equal time (reported in either currency) is unbounded because
        the per-call times are too imprecise (a θ lower limit of 0) and budget is left, re-time the pick and the
        runner-up (interleaved, pooled) once before the result is made: the decision is made, the factor reported
        is then bounded."""
        pick, runner = self._pick_and_runner(self.primary)
        if pick is None or runner is None or pick.stats["exact"] or not runner.stats.get("valid"):
            return
        if not (pick.arm.can_retime and runner.arm.can_retime):
            return
        r, lo, hi = self._ratio(runner, pick, "time")
        if math.isfinite(hi) and lo > 0:
            return
        want = self._retime_sizes([pick, runner])
        if want is not None:
            self._retime(want, len(self.records))["for"] = "report"

    def _result(self, stop: str, primary: str) -> RaceResult:
        cfg, rb = self.cfg, self.cfg.rank_by
        z = self.records[-1].z if self.records else math.nan
        for s in self.states:
            if s.n >= 2 and s.cost is not None:
                s.compute(z, self.truth)
        ok = [s for s in self.states if s.status != "dropped" and s.stats.get("valid")]
        unb = [s for s in ok if s.group == "unbiased"]
        n_family = max(len([s for s in self.states if s.status != "dropped"]), 1)
        bias = {s.name: self._bias(s, None, n_family) for s in self.states}
        note = ""
        pick_state, runner = self._pick_and_runner(primary)
        if primary != "unbiased":
            note = "no unbiased estimator applies: nothing is recommended"
        elif pick_state is None:
            note = "no survivor has a valid variance interval (heavy tails or too few replicates)"
        flagged = [s.name for s in self.states if s.arm.unbiased and bias[s.name]["bias_detected"]]
        if flagged:  # declarations decide unbiasedness; a rejected bias test is a warning (5% false alarms)
            note = (note + "; " if note else "") + (
                f"declared unbiased, but the bias test rejects at family-wise {BIAS_ALPHA:.0%}: {', '.join(flagged)} "
                "(run `stochgrad check` on it)"
            )
        if self.truth is None and pick_state is not None:  # biased arms: bias against the pick's mean
            for s in self.states:
                if s.group == "biased":
                    bias[s.name] = self._bias(s, pick_state, n_family)
        pick = pick_state.name if pick_state else None
        factors: dict[str, Factor | None] = {}
        for m in RANK_BY:
            if runner is None or pick_state is None:
                factors[m] = None
                continue
            f = self._ratio(runner, pick_state, m)
            factors[m] = Factor(runner.name, pick_state.name, m, *f)
        alive_p = [s for s in self.states if s.alive and s.group == primary]
        others = [s for s in alive_p if s is not pick_state]
        not_comparable = [s.name for s in others if not s.stats.get("valid")]
        comparable = [s.name for s in others if s.stats.get("valid")]
        lim = 1 + cfg.tolerance
        ratio = {n: self._ratio(self._by(n), pick_state, rb) for n in comparable} if pick_state else {}
        within = [n for n in ratio if stop in DECIDED and 1 / lim <= ratio[n][1]]
        ties = [n for n in within if ratio[n][2] <= lim]
        worse = [n for n in within if n not in ties and ratio[n][1] > 1]  # worse with confidence, not eliminated
        close = [n for n in within if n not in ties and n not in worse]  # at most tol better than the pick
        unresolved = [n for n in comparable if n not in ties and n not in worse]
        leaders: dict[str, str | None] = {}
        for m in (*RANK_BY, "samples"):
            val = {s.name: s.stats["variance"] if m == "samples" else s.theta(m)[0] for s in unb}
            val = {k: v for k, v in val.items() if math.isfinite(v)}
            leaders[m] = min(val, key=val.__getitem__) if val else None
        biased_ok = [s for s in ok if s.group == "biased" and s.alive]
        biased_leader = min(biased_ok, key=lambda s: s.theta(rb)[0]).name if biased_ok else None
        arms = {s.name: self._arm_report(s, bias[s.name], pick, ties) for s in self.states}
        return RaceResult(
            pick=pick,
            pick_note=note,
            rank_by=rb,
            stop_reason=stop,
            decided=stop in DECIDED and pick is not None,
            runner_up=runner.name if runner else None,
            factors=factors,
            ties=ties,
            unresolved=unresolved,
            close=close,
            worse=worse,
            not_comparable=not_comparable,
            eliminated={s.name: s.out_round for s in self.states if s.status == "eliminated" and s.out_round},
            rounds=self.records,
            rounds_planned=self.rounds_planned,
            budget_s=self.budget,
            spent_s=self.clock() - self.t0,
            arms=arms,
            biased_leader=biased_leader,
            excluded=dict(self.excluded),
            leaders=leaders,
            level={
                "alpha": cfg.alpha,
                "correction": cfg.correction,
                "z_final": z,
                "tolerance": cfg.tolerance,
                "intervals": "family-wise over all intervals made (see level.correction)",
            },
            retimed=list(self.retimes),
        )

    def _arm_report(self, s: ArmState, bias: dict[str, Any], pick: str | None, ties: list[str]) -> dict[str, Any]:
        st = s.stats
        status = "pick" if s.name == pick else "tied" if s.name in ties else "survivor" if s.alive else s.status
        nan3 = (math.nan,) * 3
        return {
            "name": s.name,
            "info": dict(s.arm.info),
            "unbiased": s.arm.unbiased,
            "status": status,
            "round_out": s.out_round,
            "eliminated_by": s.out_by,
            "reason": s.reason,
            "n_replicates": s.n,
            "n_nonfinite": s.n_bad,
            "wall_s": s.wall,
            "variance": st.get("variance", math.nan),
            "variance_low": st.get("low", math.nan),
            "variance_high": st.get("high", math.nan),
            "heavy_tail": st.get("heavy_tail", ""),
            "valid": bool(st.get("valid", False)),
            "exact": bool(st.get("exact", False)),
            "time": dict(zip(("value", "low", "high"), st.get("time", nan3))),
            "evals": dict(zip(("value", "low", "high"), st.get("evals", nan3))),
            "cost": asdict(s.cost) if s.cost else None,
            **bias,
        }


def race(
    arms: Sequence[Arm],
    *,
    budget_s: float | None = None,
    config: RaceConfig | None = None,
    truth: Any = None,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[RoundRecord], None] | None = None,
) -> RaceResult:
    """Race ``arms`` by successive elimination at equal cost (module docstring); ``truth`` (the exact gradient,
    [C] or {param: array}) is used for the bias of biased arms; ``clock`` is injectable (tests: fake costs)."""
    return Race(arms, budget_s=budget_s, config=config, truth=truth, clock=clock, progress=progress).run()
