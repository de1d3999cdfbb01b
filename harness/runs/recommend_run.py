"""A recommend run: a target's applicable estimators raced at equal cost (harness.stats.race) into a run directory.

What ``stochgrad recommend`` does, below the public API:

* **targets** (:class:`RecommendTarget`: a problem or a workload at a checkpoint, with L, backend, device, dtype):
  a problem from the command line (:func:`parse_problem`, e.g. ``normal(loc=0.5,scale=1.5)/quadratic/D=4`` — the
  form of a problem's label), a workload (:func:`workload_target`), or every distinct target of a suite file
  (:func:`suite_targets`: one answer per problem or workload × L × backend × device);
* **arms** (:func:`arm_points`): every registered estimator whose implementation on the backend applies to the
  target's traits (:func:`harness.registry.applies`, the one matcher), at its default hyperparameters, plus with
  ``grid`` a small one-at-a-time grid of its declared hyperparameters (:func:`hyper_grid`); oracle estimators are
  listed as not raced; a point declared biased (``Estimator.is_unbiased``) races in the biased group (reported
  with its measured bias, never the pick).  Nothing is decided from a name;
* **samplers** (:class:`RunnerSampler`): every draw goes through the one runner
  (:func:`harness.measure.runner.estimate_target`, a fresh seed per draw); the cost of one estimate is its
  per-call time at R = 1 (:func:`harness.measure.runner.timing_callers`: timed quickly at the first draw, re-timed
  longer — pooled, interleaved with the other survivors — only when the race's decision is limited by the
  times' uncertainty) and the runner's evaluation counts (``f_evals``, ``grad_evals``, ``aux_evals``);
* **the race**: :func:`harness.stats.race.race` with ``budget_s`` per answer (first calls — compilation, fitted
  hyperparameters — are paid before the race, from the same budget, and reported apart);
* **the run directory** (:class:`harness.runs.writer.RunWriter`, kind ``recommend``): ``meta.json``,
  ``answers/<key>.json`` (one per target, written as it finishes: a resume skips it), ``recommend.json`` (every
  answer) and ``results.parquet`` (one row per target × arm), rebuilt when the run ends.  ``stochgrad report``
  renders it (:mod:`harness.report.recommend`).

Bad input raises :class:`RecommendError` (a :class:`~harness.runs.writer.RunError`: exit 2 from the CLI) before
anything is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd

from harness.files.atomic import atomic_write_json, atomic_write_parquet
from harness.measure.runner import COUNT_KEYS, MeasureRequest, estimate_target, timing_callers
from harness.measure.timing import TimingConfig, more_samples, time_call
from harness.problems import ProblemError, ProblemSpec
from harness.registry import applies as estimator_applies
from harness.registry import ensure_loaded, get_declaration, implementations
from harness.registry.declarations import Estimator, Implementation, RegistryError
from harness.registry.hyper import Hyper
from harness.registry.interrupts import as_failure
from harness.runs.machine import git_commit, machine_info
from harness.runs.progress import StatusLine, bar
from harness.runs.writer import RunError, RunPlan, RunWriter, check_cache, check_out, new_run_dir
from harness.stats.race import RANK_BY, Arm, Cost, Draw, RaceConfig, RaceError, RoundRecord, race
from harness.suite.expand import expand
from harness.targets import WorkloadSpec, check_spec
from harness.targets.workload_truth import choose_method
from harness.workloads import WorkloadError

KIND = "recommend"
RECORDS = "answers"
DEFAULT_BUDGET_S = 60.0
DEFAULT_SAMPLES = 2
QUICK = TimingConfig(max_time_s=0.05, min_sample_s=0.002)  # an arm's per-call time at its first draw (re-timed,
# pooled, when the race's decision is limited by it: harness.stats.race)
GRID_FACTORS = (0.1, 10.0)  # a numeric hyperparameter's grid: its default × these, clipped to its range
MAX_CHOICES = 4  # a categorical hyperparameter with more choices than this is left at its default


class RecommendError(RunError):
    """A recommendation that cannot be made as asked (bad target, estimator, budget, currency): exit 2."""


# -- targets -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecommendTarget:
    """What one answer is about: a target (problem or workload spec) measured at L on a backend and device."""

    target: Any  # ProblemSpec | WorkloadSpec (harness.targets)
    n_samples: int = DEFAULT_SAMPLES
    backend: str = "numpy"
    device: str = "cpu"
    dtype: str = "float64"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(),
            "n_samples": self.n_samples,
            "backend": self.backend,
            "device": self.device,
            "dtype": self.dtype,
        }

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"{self.target.label()} L={self.n_samples} {self.backend}:{self.device}"

    @property
    def kind(self) -> str:
        return "workload" if isinstance(self.target, WorkloadSpec) else "problem"


_PROBLEM_RE = re.compile(
    r"^\s*(?P<dist>[A-Za-z_]\w*)\s*(?:\((?P<params>[^()]*)\)|:(?P<params2>[^/]*))?\s*"
    r"/\s*(?P<obj>[A-Za-z_]\w*)\s*(?:\((?P<oparams>[^()]*)\))?\s*"
    r"(?:/\s*D\s*=\s*(?P<dim>\d+))?\s*$"
)
PROBLEM_SYNTAX = "DIST(p=v,...)/OBJECTIVE(q=v,...)/D=N, e.g. 'normal(loc=0.5,scale=1.5)/quadratic/D=4'"


def _value(text: str, where: str) -> Any:
    """A parameter value from the command line: a JSON number, list or string (bare words are strings)."""
    try:
        return json.loads(text)
    except ValueError:
        if re.fullmatch(r"[A-Za-z_][\w.-]*", text):
            return text
        raise RecommendError(f"{where}: cannot read value {text!r} (a number, a [list] or a word)") from None


def parse_assignments(text: str, where: str) -> dict[str, Any]:
    """``k=v,k2=[1,2],...`` as a dict (values: JSON numbers/lists, or words); commas inside [...] are kept."""
    out: dict[str, Any] = {}
    if not text or not text.strip():
        return out
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise RecommendError(f"{where}: expected key=value, got {p.strip()!r}")
        out[k.strip()] = _value(v.strip(), f"{where} {k.strip()}")
    return out


def parse_problem(text: str) -> ProblemSpec:
    """A problem from the command line (the form of its label): ``DIST(params)/OBJECTIVE(params)/D=N``; params are
    ``k=v`` (``DIST:k=v,...`` also reads), D defaults to 1.  Validated by building it (ProblemError naming the key)."""
    m = _PROBLEM_RE.match(text)
    if not m:
        raise RecommendError(
            f"target {text!r}: not a problem; expected {PROBLEM_SYNTAX}, a suite file (.toml), or --workload"
        )
    params = parse_assignments(m["params"] or m["params2"] or "", "target params")
    oparams = parse_assignments(m["oparams"] or "", "target objective params")
    spec = ProblemSpec(m["dist"], m["obj"], int(m["dim"] or 1), params, oparams)
    spec.build()  # validates: unknown distribution/objective/parameter -> ProblemError with the valid choices
    return spec


def workload_target(
    workload: str,
    config: Mapping[str, Any] | None = None,
    checkpoint: int = 0,
    *,
    batch_size: int = 0,
    split: str = "",
    truth: str = "auto",
) -> WorkloadSpec:
    """A workload at a checkpoint (built-in or registered by the user), validated without training anything."""
    spec = WorkloadSpec(workload, dict(config or {}), int(checkpoint), split=split, batch_size=batch_size, truth=truth)
    try:
        check_spec(spec)
    except WorkloadError as exc:
        raise RecommendError(f"--workload {workload}: {exc}") from None
    return spec


def default_backend(target: Any) -> str:
    """numpy where the target runs on it (the CPU reference), else the first backend it runs on."""
    bks = target.traits().backends
    return "numpy" if "numpy" in bks else bks[0]


def suite_targets(path: str | Path, *, backend: str | None = None, samples: int | None = None) -> list[RecommendTarget]:
    """Every distinct target of a suite file × L × backend × device × dtype (suite order): one answer each.

    The suite's estimator lists and hyperparameters are not used: every applicable estimator races.  ``backend``
    and ``samples`` replace the suite's backends and L."""
    exp = expand(path, backends=[backend] if backend else None)
    seen: dict[str, RecommendTarget] = {}
    for c in exp.cells:
        t = RecommendTarget(c.target, samples or c.n_samples, c.backend, c.device, c.dtype)
        seen.setdefault(t.key(), t)
    if not seen:
        raise RecommendError(f"{path}: the suite expands to no cells (no target to recommend for)")
    return list(seen.values())


# -- arms ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmPoint:
    """One arm: an estimator implementation at one hyperparameter point, with its declared properties."""

    label: str
    impl: Implementation
    hyper: dict[str, Any]
    unbiased: bool
    oracle: bool


def arm_label(name: str, hyper: Mapping[str, Any]) -> str:
    return name + ("[" + ",".join(f"{k}={v}" for k, v in sorted(hyper.items())) + "]" if hyper else "")


def hyper_grid(est: Estimator) -> list[dict[str, Any]]:
    """Default hyperparameters, then one hyperparameter at a time moved: every choice (categorical, at most
    MAX_CHOICES; booleans both ways), or default × GRID_FACTORS clipped to the declared range (numbers)."""
    points: list[dict[str, Any]] = [{}]
    for k, h in est.hyperparameters.items():
        for v in _alternatives(h):
            if v != h.default and h.validate(v) is None and {k: v} not in points:
                points.append({k: v})
    return points


def _alternatives(h: Hyper) -> list[Any]:
    if h.choices is not None:
        return list(h.choices) if len(h.choices) <= MAX_CHOICES else []
    if isinstance(h.default, bool):
        return [not h.default]
    if not isinstance(h.default, int | float) or h.default == 0:
        return []
    out = []
    for f in GRID_FACTORS:
        v: Any = h.default * f
        v = min(max(v, h.low if h.low is not None else v), h.high if h.high is not None else v)
        if h.integer or type(h.default) is int:
            v = int(round(v))
        out.append(v)
    return out


def arm_points(
    t: RecommendTarget, estimators: Sequence[str] | None = None, grid: bool = False
) -> tuple[list[ArmPoint], dict[str, str]]:
    """The arms on ``t`` (module docstring) and why each other registered estimator is not raced.

    ``estimators`` restricts the race to these names (each must be registered: RecommendError otherwise)."""
    ensure_loaded()
    traits = t.target.traits()
    impls = [s for s in implementations() if s.backend == t.backend]
    if estimators is not None:
        known = {s.name for s in implementations()}
        unknown = [n for n in estimators if n not in known]
        if unknown:
            raise RecommendError(f"--estimators: unknown estimator {unknown[0]!r}; valid: {sorted(known)}")
        impls = [s for s in impls if s.name in estimators]
        missing = [n for n in estimators if n not in {s.name for s in impls}]
        if missing:
            raise RecommendError(f"--estimators: {missing[0]!r} has no {t.backend!r} implementation")
    points: list[ArmPoint] = []
    excluded: dict[str, str] = {}
    for s in impls:
        ok, why = estimator_applies(s, traits, n_samples=t.n_samples)
        if not ok:
            excluded[s.name] = why
            continue
        decl = get_declaration(s.name)
        for h in hyper_grid(decl) if grid else [{}]:
            points.append(ArmPoint(arm_label(s.name, h), s, h, decl.is_unbiased(h), bool(decl.oracle)))
    return points, excluded


# -- samplers ------------------------------------------------------------------------------------------------------
def _seed(*parts: Any) -> int:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 2


@dataclass
class RunnerSampler:
    """An arm's draws through the one runner on a built target, a fresh seed per draw; its cost: per-call time
    (timed quickly at the first draw; :meth:`retime` takes more samples, pooled, when the race asks) and the
    runner's evaluation counts."""

    built: Any
    t: RecommendTarget
    point: ArmPoint
    seed: int
    cost: Cost | None = None
    calls: int = 0
    counts: dict[str, float] = field(default_factory=dict)
    _seeds: Any = None
    _samples: list[float] = field(default_factory=list)  # pooled timing samples, each the mean of _number calls
    _number: int = 1
    _timed: Any = None  # (call, sync) of one estimate at R = 1

    def request(self, R: int, seed: int) -> MeasureRequest:
        return MeasureRequest(
            self.point.impl,
            self.built,
            L=self.t.n_samples,
            R=R,
            seed=seed,
            hyper=dict(self.point.hyper),
            dtype=self.t.dtype,
            device=self.t.device,
        )

    def first_call(self) -> dict[str, Any]:
        """One estimate (compilation, fitted hyperparameters happen here); returns the runner's info."""
        with as_failure():
            _, info = estimate_target(self.request(1, self.seed), self.built)
        self._counts(info)
        return info

    def _counts(self, info: Mapping[str, Any]) -> None:
        if all(k in info for k in COUNT_KEYS[:2]):
            self.counts = {k: float(info.get(k, 0.0)) for k in COUNT_KEYS}

    def _cost(self) -> Cost:
        q1, med, q3 = np.percentile(self._samples, [25, 50, 75])
        c = self.counts
        return Cost(
            float(med),
            float(q3 - q1),
            len(self._samples),
            c.get("f_evals", math.nan),
            c.get("grad_evals", 0.0),
            c.get("aux_evals", 0.0),
            timing_s=float(sum(self._samples)) * self._number,
        )

    def _time(self) -> Cost:
        """The first per-call time (QUICK), its samples kept for pooling."""
        req = self.request(1, self.seed)
        callers = timing_callers(req, self.built.parts(req.seed))
        if len(callers) == 1:
            self._timed = (callers[0].timed, callers[0].B.sync)
        else:
            self._timed = (lambda: [c.timed() for c in callers], callers[0].B.sync)
        with as_failure():
            self._number = time_call(*self._timed, QUICK, samples_out=self._samples).time_inner_loops
        return self._cost()

    def retime(self, seconds: float) -> Cost:
        """About ``seconds`` more timing samples of one estimate, pooled with the earlier ones (the race calls this
        on the survivors, interleaved, when per-call times limit its decision)."""
        if self._timed is None:
            self.cost = self._time()
            return self.cost
        with as_failure():
            self._samples += more_samples(*self._timed, self._number, seconds)
        self.cost = self._cost()
        return self.cost

    def draw(self, n: int) -> Draw:
        if self._seeds is None:
            self._seeds = np.random.SeedSequence(self.seed)
        self.calls += 1
        seed = int(self._seeds.spawn(1)[0].generate_state(1, dtype=np.uint64)[0] >> np.uint64(2))
        with as_failure():
            G, info = estimate_target(self.request(n, seed), self.built)
        self._counts(info)
        if self.cost is None:
            self.cost = self._time()
        return Draw(G, self.cost)


# -- one answer ----------------------------------------------------------------------------------------------------
def truth_of(built: Any) -> dict[str, np.ndarray] | None:
    """The exact gradient to measure biased arms against: a problem's; a workload's only when exact (enumeration or
    quadrature; a reference estimate has its own error, so biased arms are then measured against the pick)."""
    spec = built.spec
    if isinstance(spec, WorkloadSpec) and choose_method(built) == "reference":
        return None
    return {k: np.asarray(built.exact.grads[k]) for k in built.param_names}


class RaceProgress:
    """The race's progress display (a callback per round): on a TTY one live line — round, live leader, the
    estimators still in the race, budget spent as a bar — with each round's eliminations kept as lines above it;
    otherwise one line per round (:class:`harness.runs.progress.StatusLine`)."""

    def __init__(self, stream: TextIO, label: str, budget_s: float | None) -> None:
        self.line, self.label, self.budget = StatusLine(stream, every_s=0.0), label, budget_s

    def __call__(self, r: RoundRecord) -> None:
        budget = r.budget_s or self.budget
        spent = f"{r.spent_s:.1f} of {budget:.3g} s" if budget else f"{r.spent_s:.1f} s"
        retimed = f" (re-timed: {', '.join(r.retimed)})" if r.retimed else ""
        if r.confirmed:
            retimed += f" (re-timed to confirm eliminations: {', '.join(r.confirmed)})"
        if self.line.tty:
            if r.eliminated:
                self.line.note(f"[{self.label}] round {r.round}: out: " + ", ".join(n for n, _ in r.eliminated))
            gauge = bar(r.spent_s / budget, 12) + " " if budget else ""
            self.line.show(
                f"{gauge}{spent} · round {r.round}{retimed} · leader {r.leader or '—'} · in the race "
                f"({len(r.survivors)}): {', '.join(r.survivors)}"
            )
            return
        out = "; out: " + ", ".join(n for n, _ in r.eliminated) if r.eliminated else ""
        self.line.show(
            f"[{self.label}] round {r.round}{retimed}: leader {r.leader or '—'}; in the race ({len(r.survivors)}): "
            f"{', '.join(r.survivors)}{out}; {spent}"
        )

    def close(self) -> None:
        self.line.close()


def recommend_one(
    t: RecommendTarget,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    rank_by: str = "time",
    estimators: Sequence[str] | None = None,
    grid: bool = False,
    seed: int = 0,
    config: RaceConfig | None = None,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Race the arms of one target (module docstring); returns the JSON-able answer.  An estimator that ends its own
    call with ``SystemExit`` or ``KeyboardInterrupt`` (no Ctrl-C) is excluded or dropped with why, as any failing
    estimator; a Ctrl-C stops the answer."""
    t0 = time.perf_counter()
    points, not_applicable = arm_points(t, estimators, grid)
    built = t.target.build()
    samplers: dict[str, RunnerSampler] = {}
    failed: dict[str, str] = {}
    for p in points:
        s = RunnerSampler(built, t, p, _seed(t.key(), p.label, seed))
        if p.oracle:  # never raced: the race lists it as excluded without calling it
            samplers[p.label] = s
            continue
        try:
            s.first_call()
        except Exception as exc:  # one broken estimator is reported, never the end of the answer
            failed[p.label] = f"error: {type(exc).__name__}: {exc}"
            continue
        samplers[p.label] = s
    raced = [p for p in points if p.label in samplers]
    first_s = time.perf_counter() - t0
    arms = [
        Arm(
            p.label,
            samplers[p.label],
            unbiased=p.unbiased,
            oracle=p.oracle,
            info={"estimator": p.impl.name, "hyper": p.hyper, "backend": p.impl.backend},
        )
        for p in raced
    ]
    cfg = config or RaceConfig(rank_by=rank_by)
    left = max(budget_s - first_s, 1e-3)
    stream = stream or sys.stderr
    progress = RaceProgress(stream, t.label(), left)
    try:
        res = race(arms, budget_s=left, config=cfg, truth=truth_of(built), progress=progress)
    except RaceError as exc:
        raise RecommendError(str(exc)) from None
    finally:
        progress.close()
    out = res.to_dict()
    for label, why in failed.items():
        out["excluded"][label] = why
    return {
        "key": t.key(),
        "status": "ok",
        "target": t.to_dict(),
        "label": t.label(),
        "kind": t.kind,
        "rank_by": rank_by,
        "budget_s": budget_s,
        "first_calls_s": first_s,
        "race_budget_s": left,
        "seconds": time.perf_counter() - t0,
        "counts": {p.label: samplers[p.label].counts for p in raced if samplers[p.label].counts},
        "not_applicable": not_applicable,
        "race": out,
        "text": res.text(),
    }


def answer_text(a: Mapping[str, Any]) -> str:
    """An answer as the terminal shows it: the target, the race's account, the time taken."""
    head = f"{a['label']}  (ranked at equal {'time' if a['rank_by'] == 'time' else 'evaluations'})"
    tail = f"first calls {a['first_calls_s']:.3g} s, total {a['seconds']:.3g} s of a {a['budget_s']:.3g} s budget"
    return "\n".join([head, *("  " + ln for ln in a["text"].splitlines()), "  " + tail])


# -- the run directory ---------------------------------------------------------------------------------------------
@dataclass
class RecommendRequest:
    """A recommend run: the targets, how to race, where results go."""

    targets: list[RecommendTarget]
    budget_s: float = DEFAULT_BUDGET_S
    rank_by: str = "time"
    estimators: list[str] | None = None
    grid: bool = False
    seed: int = 0
    out: str | Path | None = None
    results_dir: Path = Path("results")
    name: str = "recommend"
    resume: bool = False
    cli_args: dict[str, Any] = field(default_factory=dict)
    config: RaceConfig | None = None


def counts_available() -> bool:
    """Whether the runner reports evaluation counts (``f_evals``, ``grad_evals``) in its info: one estimate of the
    first numpy implementation that applies to a one-site Gaussian quadratic (a property of the runner, not of any
    estimator)."""
    ensure_loaded()
    spec = ProblemSpec("normal", "quadratic", 1, {"loc": 0.0, "scale": 1.0})
    impl = next(
        s for s in implementations() if s.backend == "numpy" and estimator_applies(s, spec.traits(), n_samples=2)[0]
    )
    _, info = estimate_target(MeasureRequest(impl, spec.build(), L=2, R=2, jit=False), spec.build())
    return all(k in info for k in COUNT_KEYS[:2])


def check_request(req: RecommendRequest) -> None:
    """Bad input, before anything is written or measured (RecommendError naming the key and the valid choices)."""
    if not isinstance(req.budget_s, int | float) or not math.isfinite(req.budget_s) or req.budget_s <= 0:
        raise RecommendError(f"--budget: expected a positive number of seconds, got {req.budget_s!r}")
    if req.rank_by not in RANK_BY:
        raise RecommendError(f"--rank-by: unknown currency {req.rank_by!r}; valid: {list(RANK_BY)}")
    if not req.targets:
        raise RecommendError("no target: give a problem, a suite file or --workload")
    if req.rank_by == "evals" and not counts_available():
        raise RecommendError(
            "--rank-by evals: this runner reports no evaluation counts (" + ", ".join(COUNT_KEYS) + " in its info); "
            "rank by time instead (--rank-by time)"
        )
    if req.resume and req.out is None:
        raise RecommendError("--resume needs --out RUN_DIR (the run to continue)")
    check_out(req.out)
    for t in req.targets:
        try:
            arm_points(t, req.estimators, req.grid)
        except RegistryError as exc:
            raise RecommendError(str(exc)) from None
    if any(t.kind == "workload" for t in req.targets):
        check_cache()


def arm_rows(a: Mapping[str, Any], run_id: str) -> list[dict[str, Any]]:
    """One results.parquet row per arm of an answer (tidy: target × arm)."""
    r = a["race"]
    rows = []
    for name, arm in r["arms"].items():
        cost = arm.get("cost") or {}
        rows.append(
            {
                "run_id": run_id,
                "answer_key": a["key"],
                "target": a["label"],
                "n_samples": a["target"]["n_samples"],
                "backend": a["target"]["backend"],
                "device": a["target"]["device"],
                "rank_by": a["rank_by"],
                "arm": name,
                "estimator": arm["info"].get("estimator", name),
                "hyper": json.dumps(arm["info"].get("hyper", {}), sort_keys=True),
                "unbiased": arm["unbiased"],
                "status": arm["status"],
                "pick": name == r["pick"],
                "round_out": arm["round_out"],
                "eliminated_by": arm["eliminated_by"],
                "reason": arm["reason"],
                "n_replicates": arm["n_replicates"],
                "variance": arm["variance"],
                "variance_ci_low": arm["variance_low"],
                "variance_ci_high": arm["variance_high"],
                "heavy_tail": arm["heavy_tail"],
                "exact": arm["exact"],
                "time_median_s": cost.get("seconds"),
                "f_evals": cost.get("f_evals"),
                "grad_evals": cost.get("grad_evals"),
                "aux_evals": cost.get("aux_evals"),
                "efficiency": arm["time"]["value"],
                "efficiency_ci_low": arm["time"]["low"],
                "efficiency_ci_high": arm["time"]["high"],
                "variance_per_eval": arm["evals"]["value"],
                "variance_per_eval_ci_low": arm["evals"]["low"],
                "variance_per_eval_ci_high": arm["evals"]["high"],
                "bias": arm["bias"],
                "bias_p": arm["bias_p"],
                "bias_against": arm["bias_against"],
            }
        )
    return rows


def run_recommend(req: RecommendRequest, stream: TextIO | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """Answer every target not answered yet in the run directory (through the one run writer); returns the run
    directory and the answers in target order."""
    stream = stream or sys.stderr
    check_request(req)
    out = check_out(req.out) or new_run_dir(Path(req.results_dir), req.name)
    keys = [t.key() for t in req.targets]
    options = {
        "budget_s": float(req.budget_s),
        "estimators": req.estimators,
        "grid": req.grid,
        "seed": req.seed,
        "race_config": None if req.config is None else vars(req.config),
    }
    writer = RunWriter(
        out,
        RunPlan(
            kind=KIND,
            identity={"target_keys": keys, "rank_by": req.rank_by},
            options=options,
            meta={
                "suite": req.name,
                "targets": [t.to_dict() for t in req.targets],
                "target_labels": [t.label() for t in req.targets],
                "answers_total": len(req.targets),
                "cli_args": req.cli_args,
                "git_commit": git_commit(Path(__file__).parent),
                "machine": _machine(),
            },
            records=RECORDS,
        ),
        stream,
    )
    meta = writer.open(req.resume)
    done = {k for k, r in writer.records().items() if r.get("status") == "ok"}
    answers: dict[str, dict[str, Any]] = {}

    def finish() -> bool:
        records = writer.records()
        ordered = [records[k] for k in keys if k in records and records[k].get("status") == "ok"]
        answers.update({a["key"]: a for a in ordered})
        meta["answers_done"] = len(ordered)
        meta["failed"] = [
            {"target": r.get("label", k), "error": r.get("message", "")}
            for k, r in records.items()
            if r.get("status") == "failed"
        ]
        meta["picks"] = {a["label"]: a["race"]["pick"] for a in ordered}
        atomic_write_json(out / "recommend.json", {"run_id": out.name, "answers": ordered})
        rows = [row for a in ordered for row in arm_rows(a, out.name)]
        atomic_write_parquet(out / "results.parquet", pd.DataFrame(rows))
        return all(k in records for k in keys)

    with writer.running(finish):
        (out / RECORDS).mkdir(parents=True, exist_ok=True)
        for t in req.targets:
            if t.key() in done:
                stream.write(f"[{t.label()}] answered already (resume): skipped\n")
                continue
            try:
                a = recommend_one(
                    t,
                    budget_s=req.budget_s,
                    rank_by=req.rank_by,
                    estimators=req.estimators,
                    grid=req.grid,
                    seed=req.seed,
                    config=req.config,
                    stream=stream,
                )
            except (RecommendError, ProblemError, WorkloadError):
                raise
            except Exception as exc:  # one target that cannot be answered does not stop the others
                a = {"key": t.key(), "status": "failed", "label": t.label(), "message": f"{type(exc).__name__}: {exc}"}
                stream.write(f"[{t.label()}] FAILED: {a['message']}\n")
            writer.save_record(t.key(), a)
    return out, [answers[k] for k in keys if k in answers]


def _machine() -> dict[str, Any]:
    try:
        return machine_info()
    except Exception as exc:  # environment details are informative, never fatal
        return {"error": str(exc)}
