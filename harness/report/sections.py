"""Assemble the per-problem sections of a report: leaderboards and figures for each distribution × objective."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.report import plots
from harness.report.data import agreement, available, bias_threshold, config_order, instances, pool_platforms
from harness.report.pipeline import FigurePipeline, default_workers
from harness.report.tables import efficiency_table, per_eval_table, variance_table
from harness.results.ranking import DEFAULT_RANK_BY, RANK_BY, RANK_LABELS

BOARDS = {  # leaderboard titles per ranking
    "time": "efficiency (variance × time per call)",
    "evals": "variance × evaluations per estimate",
    "samples": "variance",
}
MAX_ROWS_VS_DIM = 3
FIG_BUDGET = 4 * 2**20  # bytes of per-instance figures; beyond it, instances show tables only (with a note)


def anchor(*parts: Any) -> str:
    """A stable HTML id (hex digest: safe in attributes whatever the names contain)."""
    return "s" + hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:10]


@dataclass
class Instance:
    id: str
    title: str
    key: tuple[str, str, int]
    open: bool
    params: list[dict[str, Any]] = field(default_factory=list)
    figures: list[plots.FigureOut] = field(default_factory=list)
    note: str = ""


@dataclass
class Section:
    id: str
    title: str
    open: bool
    n_cells: int
    configs: list[str]
    biased: list[str]
    instances: list[Instance] = field(default_factory=list)
    figures: list[plots.FigureOut] = field(default_factory=list)


def _cells(d: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (timing is per cell, not per parameter)."""
    return d.drop_duplicates(["run_id", "cell_key"])


def build_sections(
    df: pd.DataFrame,
    pooled: pd.DataFrame,
    agree: pd.DataFrame,
    *,
    collapse: bool,
    figures: bool = True,
    fig_budget: int = FIG_BUDGET,
    workers: int | None = 0,
    rank_by: str = DEFAULT_RANK_BY,
) -> list[Section]:
    """Sections per group; per-instance figures stop (tables stay) once they reach ``fig_budget`` bytes.

    Each parameter's leaderboards come in the order of ``rank_by`` (the ranking in force first): efficiency (equal
    time), variance × evaluations (equal evaluations; only where the run records the counts), variance (equal L).

    Figures are drawn by a :class:`~harness.report.pipeline.FigurePipeline` (``workers`` processes; None: every
    available CPU for a large report) while the tables are built; the budget is applied in instance order.
    """
    zthr = bias_threshold(df)
    flagged: dict[tuple, set[tuple[str, int]]] = {}
    if not agree.empty:
        for r in agree[agree["significant"]].itertuples(index=False):
            flagged.setdefault((r.group, r.setting, r.dim, r.param), set()).add((r.config, int(r.n_samples)))
    device_of = dict(zip(df["platform"], df["device_key"]))
    per_eval = available(pooled, "evals")  # runs made before issue 19 have no evaluation counts: no such board
    out: list[Section] = []
    insts = instances(df)
    groups = list(dict.fromkeys(g for g, _, _ in insts))
    if workers is None:
        workers = default_workers(len(insts) + len(groups)) if figures else 0
    budget = {"used": 0}

    def keep(inst: Instance) -> Callable[[Any, bool], None]:
        def done(result: tuple[list[plots.FigureOut], str] | None, skipped: bool) -> None:
            if skipped:
                inst.note = (
                    "Figures omitted: the report's figure budget is spent (very large run); the tables are complete."
                )
                return
            inst.figures, inst.note = result
            budget["used"] += sum(x.nbytes for x in inst.figures)

        return done

    def set_figures(sec: Section) -> Callable[[Any, bool], None]:
        def done(result: list[plots.FigureOut], skipped: bool) -> None:
            sec.figures = result

        return done

    with FigurePipeline(workers) as pipe:
        for gi, g in enumerate(groups):
            dg = df[df["group"] == g]
            pg = pooled[pooled["group"] == g]
            configs = config_order(dg)
            unb = dict(zip(dg["config"], dg["unbiased"]))
            biased = [c for c in configs if unb.get(c) is False]
            palette = plots.Palette(configs, set(biased))
            sec = Section(
                anchor(g),
                g,
                open=not collapse or gi == 0,
                n_cells=int(_cells(dg).shape[0]),
                configs=configs,
                biased=biased,
            )
            params = list(dict.fromkeys(dg["param"]))
            platforms = sorted(dg["platform"].unique())
            for k, (_, s, d) in enumerate(i for i in insts if i[0] == g):
                di = dg[(dg["setting"] == s) & (dg["dim"] == d)]
                pi = pg[(pg["setting"] == s) & (pg["dim"] == d)]
                Ls = sorted(di["n_samples"].unique())
                inst = Instance(anchor(g, s, d), f"{s} · D={d}", (g, s, int(d)), open=not collapse or k == 0)
                cfg_i = [c for c in configs if c in set(di["config"])]
                plats_i = [p for p in platforms if p in set(di["platform"])]
                if figures:
                    pipe.submit(
                        instance_figures,
                        di,
                        pi,
                        params,
                        palette,
                        cfg_i,
                        zthr,
                        on_done=keep(inst),
                        wanted=lambda: budget["used"] < fig_budget,
                    )
                for p in params:
                    pp, dp = pi[pi["param"] == p], di[di["param"] == p]
                    if pp.empty:
                        continue
                    make = {
                        "time": lambda: efficiency_table(dp, cfg_i, Ls, plats_i, unb, device_of),
                        "evals": lambda: per_eval_table(pp, cfg_i, Ls, unb),
                        "samples": lambda: variance_table(pp, cfg_i, Ls, unb, flagged.get((g, s, d, p), set())),
                    }
                    shown = [
                        {"title": f"{BOARDS[r]} — {RANK_LABELS[r]}", "html": make[r](), "primary": r == rank_by}
                        for r in [rank_by] + [r for r in RANK_BY if r != rank_by]
                        if r != "evals" or per_eval
                    ]
                    inst.params.append({"param": p, "boards": shown})
                sec.instances.append(inst)
            if figures:
                pipe.submit(_section_figures, dg, pg, params, platforms, palette, configs, on_done=set_figures(sec))
            out.append(sec)
        pipe.drain()
    return out


def instance_figures(
    di: pd.DataFrame,
    pi: pd.DataFrame,
    params: list[str],
    palette: plots.Palette,
    cfg_i: list[str],
    zthr: float,
) -> tuple[list[plots.FigureOut], str]:
    """One problem instance's figures — variance vs L, efficiency frontier, bias forest — and its note."""
    s, d = di["setting"].iloc[0], di["dim"].iloc[0]
    Ls = sorted(di["n_samples"].unique())
    pi_params = [p for p in params if p in set(pi["param"])]
    f, note = None, ""
    if len(Ls) > 1:
        f = plots.variance_vs(
            pi,
            "n_samples",
            [("", pi)],
            pi_params[:4],
            palette,
            cfg_i,
            -1.0,
            f"Variance vs L (log-log, pooled over platforms) for {s} at D={d}.",
        )
    fLs = sorted({Ls[0], Ls[len(Ls) // 2], Ls[-1]})
    fr = plots.frontier(
        di,
        pi_params,
        fLs,
        palette,
        cfg_i,
        f"Efficiency frontier (time per call vs variance) for {s} at D={d}"
        + (f", L ∈ {{{', '.join(map(str, fLs))}}}." if len(Ls) > 1 else f", L={Ls[0]}."),
    )
    Lmax = max(Ls)
    bf = None
    if (di["unbiased"] == False).any() or di["bias_detected"].any():  # noqa: E712
        bf = plots.bias_forest(
            di[di["n_samples"] == Lmax],
            pi_params,
            palette,
            cfg_i,
            zthr,
            f"Bias with 95% CI at L={Lmax} for {s} at D={d}.",
        )
    else:
        zmax = float(di["bias_z"].max()) if di["bias_z"].notna().any() else float("nan")
        note = (
            f"No bias detected here (largest bias z {zmax:.2f}, threshold {zthr:.2f}); "
            "the bias figure is drawn only where an estimator is biased or a bias is detected."
        )
    return [x for x in (f, fr, bf) if x is not None], note


def _best_slice(d: pd.DataFrame, fixed: str, varying: str, prefer_max: bool) -> tuple[int | None, int]:
    """The value of ``fixed`` (L or D) at which ``varying`` takes the most distinct values, and that count."""
    counts = d.groupby(fixed)[varying].nunique()
    if counts.empty:
        return None, 0
    best = counts[counts == counts.max()].index
    return int(best.max() if prefer_max else best.min()), int(counts.max())


def _section_figures(
    dg: pd.DataFrame,
    pg: pd.DataFrame,
    params: list[str],
    platforms: list[str],
    palette: plots.Palette,
    configs: list[str],
) -> list[plots.FigureOut]:
    """Variance vs D, time vs L and time vs D, each at the slice where the sweep has the most points."""
    figs: list[plots.FigureOut | None] = []
    rows, names = [], []
    for s in sorted(dg["setting"].unique()):
        ps = pg[pg["setting"] == s]
        L, n = _best_slice(ps, "n_samples", "dim", prefer_max=True)
        if n > 1:
            rows.append((s, L, ps[ps["n_samples"] == L]))
    if rows:
        many = len(rows) > 1
        shown = [(f"[{k + 1}] L={L}" if many else f"L={L}", d) for k, (_, L, d) in enumerate(rows[:MAX_ROWS_VS_DIM])]
        names = [f"[{k + 1}] {s}" if many else s for k, (s, _, _) in enumerate(rows[:MAX_ROWS_VS_DIM])]
        more = f" (first {MAX_ROWS_VS_DIM} of {len(rows)} settings)" if len(rows) > MAX_ROWS_VS_DIM else ""
        figs.append(
            plots.variance_vs(
                pg,
                "dim",
                shown,
                params[:4],
                palette,
                configs,
                None,
                f"Variance vs dimension, pooled over platforms{more}: {'; '.join(names)}.",
            )
        )
    cells = _cells(dg)
    best_L = max(
        ((s, *_best_slice(c, "dim", "n_samples", prefer_max=False)) for s, c in cells.groupby("setting")),
        key=lambda t: t[2],
        default=(None, None, 0),
    )
    if best_L[2] > 1:
        s, D, _ = best_L
        c = cells[(cells["setting"] == s) & (cells["dim"] == D)]
        figs.append(
            plots.time_vs(
                c, "n_samples", platforms, palette, configs, f"Time per call vs L per platform for {s} at D={D}."
            )
        )
    best_D = max(
        ((s, *_best_slice(c, "n_samples", "dim", prefer_max=True)) for s, c in cells.groupby("setting")),
        key=lambda t: t[2],
        default=(None, None, 0),
    )
    if best_D[2] > 1:
        s, L, _ = best_D
        c = cells[(cells["setting"] == s) & (cells["n_samples"] == L)]
        figs.append(
            plots.time_vs(
                c, "dim", platforms, palette, configs, f"Time per call vs dimension per platform for {s} at L={L}."
            )
        )
    return [f for f in figs if f is not None]


def prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled leaderboard rows and the cross-platform agreement table."""
    return pool_platforms(df), agreement(df)
