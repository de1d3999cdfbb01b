"""Recommending: which estimator for *this* target at *this* budget, raced at equal cost (``stochgrad recommend``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.problems import Problem, ProblemSpec
from harness.runs import recommend_run as rr
from harness.stats.race import RaceConfig
from harness.targets import WorkloadSpec

__all__ = ["PROBLEM_SYNTAX", "RecommendError", "Recommendation", "parse_config", "recommend"]

RecommendError = rr.RecommendError
PROBLEM_SYNTAX = rr.PROBLEM_SYNTAX


def parse_config(text: str, where: str = "--config") -> dict[str, Any]:
    """``k=v,k2=[1,2]`` as a dict (values: JSON numbers and lists, or words), e.g. a workload's configuration."""
    return rr.parse_assignments(text, where)


@dataclass
class Recommendation:
    """The outcome of :func:`recommend`: one answer per target (the race's result as a dict: ``pick``,
    ``runner_up`` and its ``factors`` at equal time and at equal evaluations, ``ties``, ``eliminated`` (the round
    each arm went), every arm's summary with its measured bias), and the run directory that holds them."""

    dir: Path
    answers: list[dict[str, Any]] = field(default_factory=list)
    targets_total: int = 0

    @property
    def picks(self) -> dict[str, str | None]:
        """The pick of every target, by the target's label."""
        return {a["label"]: a["race"]["pick"] for a in self.answers}

    @property
    def pick(self) -> str | None:
        """The pick of the only target (ValueError with several targets: use :attr:`picks`)."""
        if len(self.answers) != 1:
            raise ValueError(f"{len(self.answers)} answers: use .picks (by target) or .answers")
        return self.answers[0]["race"]["pick"]

    def text(self) -> str:
        """What ``stochgrad recommend`` prints: each answer's account, then the run directory."""
        return "\n\n".join([*(rr.answer_text(a) for a in self.answers), f"run directory: {self.dir}"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"run_dir": ..., "answers": [...]}`` (what ``--json`` prints)."""
        return {"run_dir": str(self.dir), "answers": self.answers}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _targets(
    target: Any, *, samples: int | None, backend: str | None, device: str, dtype: str
) -> list[rr.RecommendTarget]:
    items = list(target) if isinstance(target, list | tuple) else [target]
    out: list[rr.RecommendTarget] = []
    for x in items:
        if isinstance(x, rr.RecommendTarget):
            out.append(x)
            continue
        if isinstance(x, str | Path) and str(x).endswith(".toml"):
            if not Path(x).is_file():
                raise RecommendError(f"target {str(x)!r}: no such suite file")
            out += rr.suite_targets(x, backend=backend, samples=samples)
            continue
        if isinstance(x, str):
            spec: Any = rr.parse_problem(x)
        elif isinstance(x, Problem):
            spec = x.spec
        elif isinstance(x, ProblemSpec):
            spec = x
            spec.build()
        elif isinstance(x, WorkloadSpec):
            spec = rr.workload_target(
                x.workload, x.config, x.checkpoint, batch_size=x.batch_size, split=x.split, truth=x.truth
            )
        else:
            raise RecommendError(
                f"target: expected a problem ({rr.PROBLEM_SYNTAX}), a Problem, a WorkloadSpec or a suite file "
                f"(.toml), got {type(x).__name__}"
            )
        bk = backend or rr.default_backend(spec)
        if bk not in spec.traits().backends:
            raise RecommendError(f"--backend: {spec.label()} runs on {list(spec.traits().backends)}, not {bk!r}")
        out.append(rr.RecommendTarget(spec, samples or rr.DEFAULT_SAMPLES, bk, device, dtype))
    return out


def recommend(
    target: str | Path | Problem | ProblemSpec | WorkloadSpec | Sequence[Any],
    *,
    budget_s: float = rr.DEFAULT_BUDGET_S,
    rank_by: str = "time",
    samples: int | None = None,
    backend: str | None = None,
    device: str = "cpu",
    dtype: str = "float64",
    estimators: Sequence[str] | None = None,
    grid: bool = False,
    seed: int = 0,
    out: str | Path | None = None,
    results_dir: str | Path = "results",
    resume: bool = False,
    config: RaceConfig | None = None,
    stream: TextIO | None = None,
    cli_args: Mapping[str, Any] | None = None,
) -> Recommendation:
    """Race every applicable unbiased, non-oracle estimator on ``target`` at equal cost and name the best.

    ``target``: a problem (``"normal(loc=0.5,scale=1.5)/quadratic/D=4"``, the form of a problem's label, or a
    :class:`Problem` / :class:`ProblemSpec`), a workload at a checkpoint (``WorkloadSpec("vae_bernoulli",
    {"latent_dim": 10}, checkpoint=1000)``, built-in or registered), a suite file (one answer per distinct problem
    or workload × L × backend in it), or a list of these.  Arms: every estimator whose declarations apply to the
    target's traits (the registry's one matcher) at default hyperparameters, with ``grid=True`` also a small
    one-at-a-time grid of its declared hyperparameters; ``estimators`` restricts them to these names.  Declared-biased
    arms race apart and are reported with their measured bias (against the exact gradient where there is one),
    never picked; oracle estimators are not raced.

    The race (:mod:`harness.stats.race`, docs/notes/recommend.md): rounds of replicates at equal cost; an arm goes
    once the lower confidence limit of its cost-normalised variance exceeds the best's upper limit (family-wise 95%);
    it stops when one is left, when the survivors are tied within 10%, or when ``budget_s`` seconds (per target,
    first calls included) are spent.  ``rank_by``: ``"time"`` (variance × seconds per call on this machine) or
    ``"evals"`` (variance × objective and gradient evaluations per estimate, counted by the runner); both factors of
    the runner-up are reported.  ``samples`` = L (default 2; a suite file's own L otherwise).

    Results go to a run directory (``out``, default ``results_dir/recommend-<timestamp>``) that ``stochgrad
    report`` renders; ``resume=True`` continues an interrupted one (same targets and options).  Progress (the live
    leader and the estimators still in the race) goes to ``stream`` (default stderr).  Bad input raises
    :class:`RecommendError` (or ProblemError / RegistryError / SuiteError) naming the key and the valid choices,
    before anything is written."""
    targets = _targets(target, samples=samples, backend=backend, device=device, dtype=dtype)
    req = rr.RecommendRequest(
        targets=targets,
        budget_s=budget_s,
        rank_by=rank_by,
        estimators=list(estimators) if estimators is not None else None,
        grid=grid,
        seed=seed,
        out=out,
        results_dir=Path(results_dir),
        resume=resume,
        cli_args=dict(cli_args) if cli_args is not None else {"api": True},
        config=config,
    )
    run_dir, answers = rr.run_recommend(req, stream=stream)
    return Recommendation(run_dir, answers, len(targets))
