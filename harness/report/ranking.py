"""Who is best, at equal cost: per-problem winners and the family verdicts of the report's first screen.

The measure is chosen by ``rank_by`` (:mod:`harness.results.ranking`): ``time`` ranks by ``efficiency``
(variance × time per call; per problem and device, the best backend), ``evals`` by ``variance_per_eval``
(variance × evaluations per estimate, pooled over platforms), ``samples`` by ``variance`` (pooled; "at equal L").

Per problem (distribution × objective setting, D, parameter, L — and device for ``time``), among *eligible*
estimators — declared unbiased (or not recorded), no bias detected, bias judged, not an oracle baseline, a reliable
variance (valid interval, no heavy tail, 95% half-width below 100%) — each at its best hyperparameters:

* an estimator that is exact (zero variance) wins the problem, marked *exact* (never an infinite factor);
* otherwise the lowest value is best and those whose 95% interval overlaps the best's are *tied* (the report's
  tie rule, :func:`harness.report.tables.mark_best`: ``low_k <= high_best``).

Family verdict (one per distribution family): the estimator that is best or tied on the most of the family's
problems, shown as "best or tied on k of n".  Its factor is the median over problems of value(plain REINFORCE) ÷
value(estimator) with the range (min–max), problems where it is exact left out and counted as "exact on m".  Equal
counts are broken by the larger median factor; the others with the same count are listed as "tied on as many".  When
no estimator is best or tied on at least half of the problems (2k < n) the verdict reads "depends on the problem"
and lists the per-problem winners.  One problem therefore cannot carry a family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from harness.report.data import available, unjudged
from harness.report.sections import anchor
from harness.report.tables import esc, fmt, mark_best
from harness.results.ranking import RANK_BY, RANK_COLUMNS, RANK_LABELS

REINFORCE = "score_function"
KEYS = ["group", "setting", "dim", "param", "n_samples"]
FLAGS = ["estimator", "config", "unbiased", "oracle", "bias_detected", "exact_est", "unreliable"]
__all__ = [
    "available",
    "family_verdicts",
    "first_screen",
    "in_force",
    "measure_frame",
    "problem_winners",
    "unavailable",
    "verdict_html",
]
UNAVAILABLE = {
    "time": "timing was off",
    "evals": "the run records no evaluation counts (variance_per_eval: runs made before issue 19)",
    "samples": "no variances",
}


def measure_keys(rank_by: str) -> list[str]:
    """The problem key of a ranking: time is compared within a device."""
    return KEYS + ["device_key"] if rank_by == "time" else list(KEYS)


def measure_frame(df: pd.DataFrame, pooled: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """Rows to rank: the problem key, ``val``/``lo``/``hi`` (the measure and its 95% interval) and ``ok``
    (eligible, see module docstring).  ``time`` reads the platform rows, ``evals`` and ``samples`` the pooled ones."""
    col = RANK_COLUMNS[rank_by]
    d = df if rank_by == "time" else pooled
    if d.empty or col not in d.columns:
        return pd.DataFrame(columns=[*measure_keys(rank_by), *FLAGS, "val", "lo", "hi", "ok"])
    out = d[[*measure_keys(rank_by), *FLAGS]].copy()
    out["val"] = pd.to_numeric(d[col], errors="coerce").astype(float)
    out["lo"] = pd.to_numeric(d.get(f"{col}_ci_low", np.nan), errors="coerce").astype(float)
    out["hi"] = pd.to_numeric(d.get(f"{col}_ci_high", np.nan), errors="coerce").astype(float)
    exact = out["exact_est"].astype(bool)
    out["ok"] = (
        (out["unbiased"] != False)  # noqa: E712  (None: not recorded, counts as unbiased)
        & ~out["bias_detected"].astype(bool)
        & ~unjudged(d).to_numpy()
        & ~out["oracle"].astype(bool)
        & ~out["unreliable"].astype(bool)
        & (exact | (np.isfinite(out["val"]) & (out["val"] > 0)))
    )
    return out


@dataclass
class ProblemWin:
    """One problem's winners: ``best`` first, then the tied; ``exact`` the winners that are exact."""

    key: tuple
    label: str
    anchor: str
    winners: list[str]
    exact: list[str] = field(default_factory=list)

    @property
    def best(self) -> str:
        return self.winners[0]

    def text(self) -> str:
        names = [w + (" (exact)" if w in self.exact else "") for w in self.winners]
        return f"{self.label} → {names[0]}" + (f" (tied: {', '.join(names[1:])})" if len(names) > 1 else "")


def _label(key: dict[str, Any]) -> str:
    s = f"{key['setting']} · D={key['dim']} · ∂{key['param']} · L={key['n_samples']}"
    return s + (f" · {key['device_key']}" if "device_key" in key else "")


def problem_winners(m: pd.DataFrame, keys: list[str], who: str = "estimator") -> list[ProblemWin]:
    """Per problem key, the eligible ``who`` (estimator or config) that are best or tied (module docstring)."""
    ok = m[m["ok"]]
    out = []
    for key, g in ok.groupby(keys, sort=True):
        kd = dict(zip(keys, key))
        g = g.assign(_v=g["val"].where(~g["exact_est"].astype(bool), 0.0)).sort_values(["_v", who])
        g = g.drop_duplicates(who)  # each at its best hyperparameters / backend
        ex = g[g["exact_est"].astype(bool)]
        if len(ex):
            names = list(ex[who])
            win = ProblemWin(tuple(key), _label(kd), anchor(kd["group"], kd["setting"], kd["dim"]), names, names)
        else:
            marks = mark_best(dict(zip(g[who], g["val"])), dict(zip(g[who], g["lo"])), dict(zip(g[who], g["hi"])), None)
            best = next(n for n, mk in marks.items() if mk == "best")
            tied = [n for n in g[who] if marks.get(n) == "tie"]
            win = ProblemWin(tuple(key), _label(kd), anchor(kd["group"], kd["setting"], kd["dim"]), [best, *tied])
        out.append(win)
    return out


@dataclass
class FamilyVerdict:
    """One distribution family under one ranking (see module docstring)."""

    distribution: str
    rank_by: str
    n: int = 0  # problems with at least one eligible estimator
    pick: str | None = None
    k: int = 0  # problems on which ``pick`` is best or tied
    n_exact: int = 0  # ... of which it is exact
    factor: float = math.nan  # median over problems of value(REINFORCE) / value(pick)
    fmin: float = math.nan
    fmax: float = math.nan
    n_factor: int = 0
    tied: list[str] = field(default_factory=list)  # best or tied on as many problems as the pick
    depends: bool = False
    winners: list[ProblemWin] = field(default_factory=list)
    oracles: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def label(self) -> str:
        return RANK_LABELS[self.rank_by]

    def name(self) -> str:
        """The verdict's one-word answer: the pick, or "depends on the problem"."""
        return "depends on the problem" if self.depends else (self.pick or "—")

    def factor_text(self) -> str:
        """The factor vs plain REINFORCE: median over problems with its range, e.g. "×30.9 vs score_function (median
        of 18: 0.97–1.7e+04)"."""
        if self.pick == REINFORCE:
            return f"{REINFORCE} is the baseline"
        if not self.n_factor:
            return "no factor vs score_function" + (" (exact wherever both were measured)" if self.n_exact else "")
        if self.n_factor == 1:
            return f"×{fmt(self.factor, 3)} vs score_function (1 problem)"
        return (
            f"×{fmt(self.factor, 3)} vs score_function (median of {self.n_factor}: "
            f"{fmt(self.fmin, 2)}–{fmt(self.fmax, 2)})"
        )

    def text(self) -> str:
        """The verdict as one plain line (tests, notes, the terminal)."""
        if self.note and self.pick is None and not self.depends:
            return f"{self.distribution} {self.label}: {self.note}"
        if self.depends:
            wins = "; ".join(w.text() for w in self.winners)
            return (
                f"{self.distribution} {self.label}: depends on the problem (no estimator best or tied on half of "
                f"{self.n}): {wins}"
            )
        ex = f", exact on {self.n_exact}" if self.n_exact else ""
        s = f"{self.distribution} {self.label}: {self.pick} — best or tied on {self.k} of {self.n}{ex}; "
        s += self.factor_text()
        if self.tied:
            s += f"; as many: {', '.join(self.tied)}"
        return s


def _factors(m: pd.DataFrame, keys: list[str], name: str) -> list[float]:
    """value(REINFORCE) / value(name) per problem where both are measured, reliable and ``name`` is not exact."""
    base = m[(m["estimator"] == REINFORCE) & m["ok"] & ~m["exact_est"].astype(bool)]
    est = m[(m["estimator"] == name) & m["ok"] & ~m["exact_est"].astype(bool)]
    if base.empty or est.empty:
        return []
    b = base.groupby(keys)["val"].min().rename("b")
    e = est.groupby(keys)["val"].min().rename("e")
    j = pd.concat([b, e], axis=1, join="inner")
    # a problem on which the estimator is exact at some config is an exact win, not a factor
    exact_keys = m[(m["estimator"] == name) & m["ok"] & m["exact_est"].astype(bool)].groupby(keys).size().index
    j = j[~j.index.isin(exact_keys)]
    return list((j["b"] / j["e"]).astype(float))


def family_verdicts(m: pd.DataFrame, rank_by: str) -> list[FamilyVerdict]:
    """One verdict per distribution family (the part of ``group`` before " × ") under ``rank_by``."""
    keys = measure_keys(rank_by)
    if m.empty:
        return []
    dist_of = m["group"].astype(str).str.split(" × ").str[0]
    out = []
    for dist in sorted(dist_of.unique()):
        fm = m[dist_of == dist]
        v = FamilyVerdict(dist, rank_by)
        v.oracles = sorted(set(fm.loc[fm["oracle"].astype(bool), "estimator"]))
        v.winners = problem_winners(fm, keys)
        v.n = len(v.winners)
        if not v.n:
            v.note = "no unbiased estimator with a reliable value measured"
            out.append(v)
            continue
        counts: dict[str, int] = {}
        exact: dict[str, int] = {}
        for w in v.winners:
            for e in w.winners:
                counts[e] = counts.get(e, 0) + 1
                exact[e] = exact.get(e, 0) + (e in w.exact)
        kmax = max(counts.values())
        cands = []
        for e, k in counts.items():
            if k == kmax:
                f = _factors(fm, keys, e)
                cands.append((-(float(np.median(f)) if f else -math.inf), e, f))
        cands.sort(key=lambda c: (c[0], c[1]))
        _, pick, f = cands[0]
        v.k, v.n_exact, v.tied = kmax, exact[pick], [c[1] for c in cands[1:]]
        if f:
            v.factor, v.fmin, v.fmax, v.n_factor = float(np.median(f)), float(min(f)), float(max(f)), len(f)
        if 2 * kmax < v.n:
            v.depends = True
        else:
            v.pick = pick
        out.append(v)
    return out


@dataclass
class FamilyBlock:
    """A family on the first screen: the verdict under the ranking in force, the others beside it, and the line
    saying where the equal-L winner differs from the equal-cost one."""

    distribution: str
    primary: FamilyVerdict
    beside: list[FamilyVerdict] = field(default_factory=list)
    differs: str = ""

    def lines(self) -> list[str]:
        out = [self.primary.text()]
        out += [f"  beside: {b.text()}" for b in self.beside]
        if self.differs:
            out.append(f"  {self.differs}")
        return out


def _differs(primary: FamilyVerdict, other: FamilyVerdict | None) -> str:
    if other is None or other.name() == primary.name() or (primary.pick is None and not primary.depends):
        return ""
    return (
        f"{RANK_LABELS[other.rank_by]} the winner would be {other.name()} — it differs from the "
        f"{RANK_LABELS[primary.rank_by].removeprefix('at ')} winner, {primary.name()}"
    )


def first_screen(df: pd.DataFrame, pooled: pd.DataFrame, rank_by: str) -> list[FamilyBlock]:
    """The first screen's family verdicts: ``rank_by`` first, the other cost-fair rankings beside it (those the run
    allows: :func:`unavailable` names the others), and the equal-L ("samples") winner where it differs (the
    equal-time one where ``rank_by`` is "samples").  Where the run lacks the measure ``rank_by`` names, the first
    available of time, evals, samples is used (the report says so)."""
    per: dict[str, dict[str, FamilyVerdict]] = {}
    ok = {r: available(df if r == "time" else pooled, r) for r in RANK_BY}
    for r in RANK_BY:
        if ok[r]:
            for v in family_verdicts(measure_frame(df, pooled, r), r):
                per.setdefault(v.distribution, {})[r] = v
    rank_by = in_force(df, pooled, rank_by)
    others = [r for r in ("time", "evals") if r != rank_by]
    contrast = "time" if rank_by == "samples" else "samples"
    out = []
    for dist in sorted(per):
        vs = per[dist]
        if rank_by not in vs:
            continue
        blk = FamilyBlock(dist, vs[rank_by], [vs[r] for r in others if r in vs])
        blk.differs = _differs(vs[rank_by], vs.get(contrast))
        out.append(blk)
    return out


def in_force(df: pd.DataFrame, pooled: pd.DataFrame, rank_by: str) -> str:
    """The ranking actually used: ``rank_by``, or where the run lacks its measure the first of time, evals, samples
    that it has."""
    if available(df if rank_by == "time" else pooled, rank_by):
        return rank_by
    return next((r for r in RANK_BY if available(df if r == "time" else pooled, r)), rank_by)


def unavailable(df: pd.DataFrame, pooled: pd.DataFrame) -> list[str]:
    """The rankings the run cannot give, each with why ("at equal evaluations: the run records no ...")."""
    return [f"{RANK_LABELS[r]}: {UNAVAILABLE[r]}" for r in RANK_BY if not available(df if r == "time" else pooled, r)]


def verdict_html(v: FamilyVerdict, primary: bool = True) -> Markup:
    """A verdict as HTML for the first screen (names escaped; links to the per-problem winners' instances)."""
    lab = f'<span class="rank">{esc(v.label)}</span> '
    if v.pick is None and not v.depends:
        return Markup(lab + f'<span class="muted">{esc(v.note)}</span>')
    if v.depends:
        items = "".join(
            f'<li><a href="#{esc(w.anchor)}">{esc(w.label)}</a> → '
            + ", ".join(esc(n) + (" (exact)" if n in w.exact else "") for n in w.winners)
            + "</li>"
            for w in v.winners
        )
        return Markup(
            lab + f'<span class="depends">depends on the problem</span> <span class="muted">(no estimator is best or '
            f"tied on half of the {v.n} problems)</span>"
            f'<details class="winners"><summary>per-problem winners</summary><ul>{items}</ul></details>'
        )
    cls = "pick" if primary else "pick2"
    ex = f", exact on {v.n_exact}" if v.n_exact else ""
    s = lab + f'<span class="{cls}">{esc(v.pick)}</span> <span class="kofn">best or tied on {v.k} of {v.n}{ex}</span>'
    s += f' <span class="factor">{esc(v.factor_text())}</span>'
    if v.tied:
        s += f' <span class="muted">as many: {esc(", ".join(v.tied[:3]))}</span>'
    return Markup(s)
