"""The report's "Model workloads" section: encoder-gradient variance at training checkpoints, bias, which estimator.

Present only when the run has workload rows (``workload`` column, harness/workloads).  A *workload* here is the
problem label without its checkpoint (``vae_bernoulli(latent_dim=10)/val[4]``): model, configuration, split and
batch.  Per workload:

- one figure: total variance (the trace, ``variance_total``) of the encoder-weight gradient and of the
  η-gradient against the checkpoint, per estimator, log scale with 95% CIs (pooled over platforms as in the
  leaderboards: replicate-weighted mean, SE = sqrt(Σ w² se²)/Σ w; a row measured on one platform keeps its own,
  possibly asymmetric, interval); a third panel, when timing was on, shows the
  efficiency (total variance × time per call, best platform per estimator);
- a "which estimator" table per checkpoint, ranked by ``rank_by`` (:mod:`harness.results.ranking`; totals over
  coordinates: efficiency × coordinates at equal time, best platform; pooled total variance × evaluations per
  estimate at equal evaluations; pooled total variance at equal L): the lowest value among estimators that are
  declared unbiased, show no bias against the truth, are not oracle baselines and have a reliable variance
  (valid interval, no heavy tail, CI half-width below 100%); the runner-up, and the estimators whose 95% interval
  overlaps the best's (ties, the report's rule); the factor against ``score_function`` (or
  ``score_function_rloo`` when the run has no plain REINFORCE) with a 95% interval (delta method on log
  values); the winner under each other ranking the run allows, marked ≠ where it differs;
- a bias table where a truth exists: RMS bias with 95% CI, ``bias_z_truth`` (the estimate's and the truth's
  standard errors combined) and a verdict — "reference too imprecise to judge" when ``truth_too_imprecise``,
  otherwise "bias detected" when the z exceeds the Bonferroni threshold over the workload's judged coordinates.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.report import plots
from harness.report.data import Z95, available, bonferroni_z, config_order, evals_per_estimate
from harness.report.encode import FigureOut
from harness.report.sections import anchor
from harness.report.tables import esc, fmt, mark_best, simple_table
from harness.results.ranking import DEFAULT_RANK_BY, RANK_BY, RANK_LABELS, RANK_MEASURES

BASELINES = ("score_function", "score_function_rloo")  # the first one the run has is the reference
PARAMS = ("encoder", "eta")
KEYS = ["workload_label", "checkpoint", "param", "series"]


def has_workloads(df: pd.DataFrame) -> bool:
    """Whether the (normalized) results hold workload rows."""
    return not df.empty and "workload" in df.columns and bool(df["workload"].notna().any())


def relabel_groups(df: pd.DataFrame) -> pd.DataFrame:
    """Workload rows form one group per workload (``vae_bernoulli × neg_elbo``) instead of one per latent
    distribution: a heat-map column and a Problems section per workload.  Their ``bias_detected`` becomes the
    truth-aware judgement of :func:`bias_flags` (``bias_z_truth``, none when the reference is too imprecise),
    so the heat maps and leaderboards agree with this section."""
    if not has_workloads(df):
        return df
    df = df.copy()
    w = df["workload"].notna()
    df.loc[w, "group"] = df.loc[w, "workload"].astype(str) + " × " + df.loc[w, "objective"]
    flags = bias_flags(workload_rows(df))
    df.loc[flags.index, "bias_detected"] = flags["biased_truth"].astype(bool)
    df["bias_detected"] = df["bias_detected"].astype(bool)
    if "bias_unjudged" in df.columns:
        df.loc[flags.index, "bias_unjudged"] = False
    return df


def workload_groups(df: pd.DataFrame) -> set[str]:
    """The groups holding workload rows (after :func:`relabel_groups`)."""
    return set(df.loc[df["workload"].notna(), "group"]) if has_workloads(df) else set()


def _label(problem: str) -> str:
    return re.sub(r"@\d+", "", str(problem))


def workload_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Workload rows with ``workload_label``, integer ``checkpoint`` and a ``series`` label (config, + L if several)."""
    d = df[df["workload"].notna() & df["param"].isin(PARAMS)].copy()
    d["workload_label"] = d["problem"].map(_label)
    d["checkpoint"] = pd.to_numeric(d["checkpoint"], errors="coerce").fillna(-1).astype(int)
    multi_l = d.groupby("workload_label")["n_samples"].transform("nunique") > 1
    d["series"] = d["config"].where(~multi_l, d["config"] + " · L=" + d["n_samples"].astype(str))
    for c in (
        "variance_total",
        "variance_total_ci_low",
        "variance_total_ci_high",
        "n_coords",
        "bias_z_truth",
        "variance_per_eval",
    ):
        d[c] = pd.to_numeric(d.get(c, np.nan), errors="coerce").astype(float)
    d["truth_too_imprecise"] = d.get("truth_too_imprecise", False)
    d["truth_too_imprecise"] = d["truth_too_imprecise"].map(lambda v: bool(v) if pd.notna(v) else False)
    d["vt_se"] = (d["variance_total_ci_high"] - d["variance_total_ci_low"]) / (2 * Z95)
    d["eff_total"] = d["efficiency"] * d["n_coords"]
    return d


def pool(d: pd.DataFrame) -> pd.DataFrame:
    """One row per (workload, checkpoint, param, series): total variance pooled over platforms."""
    d = d.copy()
    d["_w"] = d["n_replicates_used"].fillna(d["n_replicates"]).fillna(1.0).clip(lower=1.0)
    d["_wv"] = d["_w"] * d["variance_total"]
    d["_w2se2"] = (d["_w"] * d["vt_se"].fillna(0.0)) ** 2
    g = d.groupby(KEYS, sort=False).agg(
        w=("_w", "sum"),
        wv=("_wv", "sum"),
        w2se2=("_w2se2", "sum"),
        estimator=("estimator", "first"),
        unbiased=("unbiased", "first"),
        oracle=("oracle", "any"),
        unreliable=("unreliable", "any"),
        exact_est=("exact_est", "all"),
        n_platforms=("platform", "nunique"),
        lo1=("variance_total_ci_low", "first"),
        hi1=("variance_total_ci_high", "first"),
        n_rows=("variance_total", "size"),
    )
    g["vt"] = g["wv"] / g["w"]
    g["se"] = np.sqrt(g["w2se2"]) / g["w"]
    one = g["n_rows"] == 1  # a single platform keeps its own (asymmetric) interval
    g["lo"] = g["lo1"].where(one, (g["vt"] - Z95 * g["se"]).clip(lower=0.0))
    g["hi"] = g["hi1"].where(one, g["vt"] + Z95 * g["se"])
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = (np.log(g["hi"]) - np.log(g["lo"])) / (2 * Z95)  # SE of log variance, from the interval
    g["lse"] = lse.where(np.isfinite(lse), g["se"] / g["vt"])
    return g.reset_index().drop(columns=["w", "wv", "w2se2", "lo1", "hi1", "n_rows"])


def measure(p: pd.DataFrame, rows: pd.DataFrame, rank_by: str) -> pd.DataFrame:
    """The pooled rows ``p`` with ``vt``/``lo``/``hi``/``lse`` replaced by the totals (over coordinates) of the
    measure ``rank_by`` ranks by: ``samples`` the pooled total variance as is; ``evals`` the pooled total variance ×
    evaluations per estimate (:func:`harness.report.data.evals_per_estimate`: a count, equal on every platform);
    ``time`` the total efficiency of the best platform (lowest ``eff_total``) with its own interval.  A row without
    the measure gets NaN (never eligible)."""
    p = p.copy()
    if rank_by == "samples":
        return p
    r = rows[rows["param"].isin(PARAMS)]
    if rank_by == "evals":
        n = evals_per_estimate(r)
        ev = n.groupby([r[k] for k in KEYS]).median().rename("_n").reset_index()
        p = p.merge(ev, on=KEYS, how="left")
        for c in ("vt", "lo", "hi", "se"):
            p[c] = p[c] * p["_n"]
        return p.drop(columns="_n")
    r = r[np.isfinite(r["eff_total"])]
    best = r.loc[r.groupby(KEYS)["eff_total"].idxmin()] if len(r) else r
    best = best[KEYS + ["eff_total", "efficiency_ci_low", "efficiency_ci_high", "n_coords"]]
    p = p.drop(columns=["vt", "lo", "hi", "se", "lse"]).merge(best, on=KEYS, how="left")
    p["vt"] = p["eff_total"]
    p["lo"], p["hi"] = p["efficiency_ci_low"] * p["n_coords"], p["efficiency_ci_high"] * p["n_coords"]
    p["se"] = (p["hi"] - p["lo"]) / (2 * Z95)
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = (np.log(p["hi"]) - np.log(p["lo"])) / (2 * Z95)
    p["lse"] = lse.where(np.isfinite(lse), p["se"] / p["vt"])
    return p.drop(columns=["eff_total", "efficiency_ci_low", "efficiency_ci_high", "n_coords"])


def bias_flags(d: pd.DataFrame) -> pd.DataFrame:
    """Per row: ``truth`` (a truth exists), ``judged`` (and it is precise enough), ``biased_truth`` (z above the
    Bonferroni threshold over the judged coordinates of the workload) and that threshold ``z_thr``."""
    d = d.copy()
    d["truth"] = d["exact_method"].fillna("").astype(str).ne("") & np.isfinite(d["bias_z_truth"])
    d["judged"] = d["truth"] & ~d["truth_too_imprecise"]
    m = d[d["judged"]].groupby("workload_label")["n_coords"].sum()
    d["z_thr"] = d["workload_label"].map(lambda w: bonferroni_z(int(m.get(w, 1))))
    d["biased_truth"] = d["judged"] & (d["bias_z_truth"] > d["z_thr"])
    return d


@dataclass
class WorkloadBlock:
    """One workload in the section: its figure, which-estimator table and bias table."""

    id: str
    title: str
    config: str
    truth: str
    checkpoints: list[int]
    baseline: str
    figures: list[FigureOut] = field(default_factory=list)
    which: Any = ""
    bias: Any = ""
    verdict: dict[str, Any] = field(default_factory=dict)
    rank_by: str = DEFAULT_RANK_BY  # the ranking its "which estimator" uses


def _eligible(p: pd.DataFrame, biased_series: set[str]) -> pd.Series:
    return (
        (p["unbiased"] != False)  # noqa: E712  (None: not recorded, counts as unbiased)
        & ~p["oracle"].astype(bool)
        & ~p["unreliable"].astype(bool)
        & ~p["exact_est"].astype(bool)
        & ~p["series"].isin(biased_series)
        & np.isfinite(p["vt"])
        & (p["vt"] > 0)
    )


def factor(base: pd.Series, est: pd.Series) -> tuple[float, float, float]:
    """var(base) / var(est) with a 95% interval (delta method on the log variances; each log variance's SE is
    read off its own 95% interval, which may be asymmetric)."""
    r = base["vt"] / est["vt"]
    s = math.hypot(base["lse"], est["lse"])
    return float(r), float(r * math.exp(-Z95 * s)), float(r * math.exp(Z95 * s))


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def which_rows(p: pd.DataFrame, biased: dict[int, set[str]], baseline: str) -> list[dict]:
    """Per checkpoint (encoder gradient), on the measure frame ``p`` (:func:`measure`): best, runner-up, ties, factor
    vs the baseline."""
    out = []
    for ck, g in p[p["param"] == "encoder"].groupby("checkpoint", sort=True):
        g = g[_eligible(g, biased.get(int(ck), set()))].reset_index(drop=True)
        line: dict[str, Any] = {"checkpoint": int(ck), "best": None, "tied": [], "runner": None}
        if not g.empty:
            marks = mark_best(g["vt"].to_dict(), g["lo"].to_dict(), g["hi"].to_dict())
            order = g.sort_values("vt").index
            ib = next(i for i, m in marks.items() if m == "best")
            line["best"] = g.loc[ib]
            line["tied"] = [g.loc[i, "series"] for i in order if marks.get(i) == "tie"]
            rest = [i for i in order if i != ib]
            line["runner"] = g.loc[rest[0]] if rest else None
            b = g[g["estimator"] == baseline]
            if len(b) and g.loc[ib, "estimator"] != baseline:
                line["factor"] = factor(b.iloc[0], g.loc[ib])
        out.append(line)
    return out


def _name(line: dict[str, Any] | None) -> str:
    return "—" if line is None or line["best"] is None else str(line["best"]["series"])


def which_table(lines: dict[str, list[dict]], rank_by: str, baseline: str) -> Any:
    """HTML of the which-estimator table: the ranking in force (best, interval, runner-up, ties, factor), then the
    winner under each other ranking the run allows, marked where it differs."""
    others = [r for r in RANK_BY if r != rank_by and r in lines]
    at = {r: {ln["checkpoint"]: ln for ln in lines[r]} for r in others}
    data = []
    for ln in lines[rank_by]:
        b, r = ln["best"], ln["runner"]
        f = ln.get("factor")
        row = {
            "checkpoint": str(ln["checkpoint"]),
            f"best {RANK_LABELS[rank_by]}": "—" if b is None else f'<span class="pick">{esc(b["series"])}</span>',
            f"total {RANK_MEASURES[rank_by]} [95% CI]": "—" if b is None else _ci(b["vt"], b["lo"], b["hi"]),
            "runner-up [95% CI]": "—" if r is None else f"{esc(r['series'])} {_ci(r['vt'], r['lo'], r['hi'])}",
            "verdict": "—"
            if b is None
            else (
                f"tied with {esc(', '.join(ln['tied']))} (95% intervals overlap)"
                if ln["tied"]
                else ("clear (intervals separate)" if r is not None else "only eligible estimator")
            ),
            f"× vs {baseline}": "—" if f is None else _ci(*f),
        }
        for o in others:
            name = _name(at[o].get(ln["checkpoint"]))
            mark = ' <span class="warn" title="differs from the winner in force">≠</span>' if name != _name(ln) else ""
            row[f"best {RANK_LABELS[o]}"] = esc(name) + (mark if name != "—" else "")
        data.append(row)
    view = pd.DataFrame(data)
    raw = {c: (lambda x: x) for c in view.columns}
    return simple_table(view, cls="plain workloads-which", formatters=raw)


def bias_table(rows: pd.DataFrame) -> Any:
    """HTML of the bias table: encoder-gradient rows that have a truth."""
    d = rows[(rows["param"] == "encoder") & rows["truth"]].sort_values(["checkpoint", "series", "platform"])
    if d.empty:
        return ""

    def verdict(r: pd.Series) -> str:
        if r["truth_too_imprecise"]:
            return "reference too imprecise to judge"
        return f"bias detected (z > {r['z_thr']:.2f})" if r["biased_truth"] else "no bias detected"

    view = pd.DataFrame(
        {
            "checkpoint": d["checkpoint"].astype(str),
            "estimator": d["series"] + [" (declared biased)" if u is False else "" for u in d["unbiased"]],
            "platform": d["platform"],
            "bias (RMS) [95% CI]": [_ci(*t) for t in zip(d["bias"], d["bias_ci_low"], d["bias_ci_high"])],
            "z vs truth": [fmt(z, 3) for z in d["bias_z_truth"]],
            "truth SE (max)": [fmt(s, 2) for s in d["truth_se_max"]],
            "verdict": [verdict(r) for _, r in d.iterrows()],
        }
    )
    cls = pd.DataFrame({c: ["" for _ in range(len(view))] for c in view.columns})
    cls["verdict"] = ["bad" if v.startswith("bias detected") else "" for v in view["verdict"]]
    return simple_table(view, cls, cls="plain workloads-bias")


def figure(p: pd.DataFrame, rows: pd.DataFrame, title: str, series: list[str], biased: set[str]) -> FigureOut | None:
    """Total variance vs checkpoint (encoder, η) and, when timed, efficiency vs checkpoint; log y with 95% CIs."""
    cks = sorted(p["checkpoint"].unique())
    pos = {c: i for i, c in enumerate(cks)}
    timed = bool(np.isfinite(rows["eff_total"]).any())
    params = [q for q in PARAMS if q in set(p["param"])]
    panels = [(q, "var") for q in params] + ([("encoder", "eff")] if timed else [])
    palette = plots.Palette(series, biased)
    with matplotlib.rc_context(plots.RC):
        fig = Figure(
            figsize=(plots.PANEL_W * len(panels) + 0.2, plots.PANEL_H + plots._legend_rows(series, len(panels))),
            layout="constrained",
        )
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (q, kind) in zip(axes, panels):
            for s in series:
                if kind == "var":
                    d = p[(p["param"] == q) & (p["series"] == s) & (p["vt"] > 0)].sort_values("checkpoint")
                    y, lo, hi = d["vt"], d["lo"], d["hi"]
                else:
                    r = rows[(rows["param"] == q) & (rows["series"] == s) & (rows["eff_total"] > 0)]
                    d = r.loc[r.groupby("checkpoint")["eff_total"].idxmin()].sort_values("checkpoint") if len(r) else r
                    y, lo, hi = (
                        d["eff_total"],
                        d["efficiency_ci_low"] * d["n_coords"],
                        d["efficiency_ci_high"] * d["n_coords"],
                    )
                if len(d):
                    plots._errbar(ax, d["checkpoint"].map(pos), y, lo, hi, palette(s))
            ax.set_yscale("log")
            ax.set_xticks(range(len(cks)), [str(c) for c in cks])
            ax.set_xlim(-0.4, len(cks) - 0.6)
            ax.set_xlabel("training checkpoint (step)")
            name = "encoder weights" if q == "encoder" else "η"
            if kind == "var":
                ax.set_title(f"∂ {name}: total variance")
                ax.set_ylabel("total variance (95% CI)")
            else:
                ax.set_title(f"∂ {name}: efficiency (best platform)")
                ax.set_ylabel("total variance × time per call")
        plots._legend(fig, palette, series)
    alt = (
        f"{title}: total variance of the encoder-weight gradient"
        + (" and of the η-gradient" if "eta" in params else "")
        + f" against the training checkpoint ({', '.join(map(str, cks))}) for {', '.join(series)}; log scale, "
        "95% confidence intervals" + ("; efficiency panel: total variance × time per call." if timed else ".")
    )
    cap = (
        f"{title}: total gradient variance (trace over coordinates) against training checkpoint, pooled over "
        "platforms, 95% CIs; dashed, hollow: declared biased."
        + (" Right: total variance × median time per call, best platform per estimator." if timed else "")
    )
    return plots.to_uri(fig, "workload", alt, cap)


def _config_text(cfg: Any) -> str:
    try:
        c = json.loads(cfg) if isinstance(cfg, str) else {}
    except json.JSONDecodeError:
        return str(cfg)
    return ", ".join(f"{k}={v}" for k, v in c.items()) or "defaults"


def build(df: pd.DataFrame, figures: bool = True, rank_by: str = DEFAULT_RANK_BY) -> list[WorkloadBlock]:
    """The section's blocks, one per workload (empty list when the run has no workload rows); "which estimator"
    ranks by ``rank_by`` (the equal-L ranking where the run lacks the measure), the others beside it."""
    if not has_workloads(df):
        return []
    rows = bias_flags(workload_rows(df))
    out = []
    for wl, w in rows.groupby("workload_label", sort=True):
        p = pool(w)
        series = [c for c in config_order(w.assign(config=w["series"])) if c in set(p["series"])]
        declared_biased = {s for s, u in zip(w["series"], w["unbiased"]) if u is False}
        biased: dict[int, set[str]] = {}
        for r in w[w["biased_truth"]].itertuples(index=False):
            biased.setdefault(int(r.checkpoint), set()).add(r.series)
        ests = set(w["estimator"])
        baseline = next((b for b in BASELINES if b in ests), BASELINES[0])
        blk = WorkloadBlock(
            anchor("workload", wl),
            str(wl),
            _config_text(w["workload_config"].iloc[0]) if "workload_config" in w.columns else "",
            ", ".join(sorted(set(w["exact_method"].replace("", "none")))),
            sorted(int(c) for c in w["checkpoint"].unique()),
            baseline,
        )
        ranks = [r for r in RANK_BY if r == "samples" or available(w, r)]
        primary = rank_by if rank_by in ranks else "samples"
        lines = {r: which_rows(measure(p, w, r), biased, baseline) for r in ranks}
        blk.rank_by = primary
        blk.which = which_table(lines, primary, baseline)
        blk.bias = bias_table(w)
        last = lines[primary][-1] if lines[primary] else None
        if last is not None and last["best"] is not None:
            beside = {r: _name(lines[r][-1]) for r in ranks if r != primary and lines[r]}
            blk.verdict = {
                "best": last["best"]["series"],
                "checkpoint": last["checkpoint"],
                "tied": last["tied"],
                "factor": last.get("factor"),
                "baseline": baseline,
                "rank_by": primary,
                "beside": beside,
                "differs": _differs(primary, last["best"]["series"], beside),
            }
        if figures:
            f = figure(p, w, str(wl), series, declared_biased)
            blk.figures = [f] if f is not None else []
        out.append(blk)
    return out


def _differs(primary: str, best: str, beside: dict[str, str]) -> str:
    """One line where the equal-L winner differs from the equal-cost one (the equal-time one where the ranking in
    force is equal L)."""
    other = "time" if primary == "samples" else "samples"
    name = beside.get(other)
    if name is None or name == best or name == "—":
        return ""
    return f"{RANK_LABELS[other]} the winner would be {name} — it differs from {best} ({RANK_LABELS[primary]})"


def verdict_text(v: dict[str, Any]) -> str:
    """The first-screen verdict after the estimator's name (plain text; the template escapes it)."""
    f = v.get("factor")
    s = f"{RANK_LABELS[v.get('rank_by', 'samples')]}, at step {v['checkpoint']}"
    if f is not None:
        s += f" ×{fmt(f[0], 3)} [{fmt(f[1], 3)}, {fmt(f[2], 3)}] vs {v['baseline']}"
    if v["tied"]:
        s += f", tied: {', '.join(v['tied'][:3])}"
    for r, name in v.get("beside", {}).items():
        s += f"; {RANK_LABELS[r]}: {name}"
    return s
