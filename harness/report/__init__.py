"""HTML reports of stochgrad runs: ``build_report(run_dirs, out)``; ``compare.compare_runs(a, b, out)``.

A pure function of run directories (results.parquet + meta.json): nothing here imports the runner, the
registry or the suite parser.  Modules: ``data`` (load, normalize, reliability flags, pool, agreement),
``ranking`` (who is best at equal
cost: per-problem winners, family verdicts), ``summary`` (first screen: heat maps, health line), ``plots`` / ``plots_agree``
(matplotlib figures), ``encode`` (figures -> compact SVG or palette-PNG data URIs), ``tables`` (lean pandas
Styler leaderboards), ``sections`` (per-problem assembly), ``catalog`` (estimators used, from meta.json), ``recommend`` (the page of
``stochgrad recommend`` runs), ``workloads``
(model workloads: variance at training checkpoints, which estimator), ``pipeline`` (figures drawn in worker
processes, consumed in order), ``render`` (header, Jinja2 templates; ``templates/report.js`` sorts, filters and
shortens tables in the browser), ``compare`` (run-vs-run ratios with confidence intervals).
"""

from __future__ import annotations

from pathlib import Path

from markupsafe import Markup

from harness.report import recommend as RC
from harness.report import render as R
from harness.report import summary as S
from harness.report import workloads as W
from harness.report.data import bias_family, load_runs
from harness.report.ranking import UNAVAILABLE, first_screen, in_force, verdict_html
from harness.report.sections import build_sections, prepare
from harness.report.tables import overview_table
from harness.report.training import is_training_run, write_html
from harness.results.ranking import RANK_LABELS, RANK_MEASURES, resolve_rank_by
from harness.runs.store import RunDirError

COLLAPSE_INSTANCES = 12  # more leaderboard blocks than this: collapse all but the first of each section
LAZY_FIGURES = 40  # more figures than this: images load lazily when their section is opened


def build_report(
    run_dirs: list[Path],
    out: Path,
    *,
    collapse_over: int = COLLAPSE_INSTANCES,
    lazy_over: int = LAZY_FIGURES,
    figures: bool = True,
    workers: int | None = 0,
    rank_by: str | None = None,
) -> Path:
    """Write one self-contained HTML report of ``run_dirs`` to ``out``; returns ``out``.

    More than ``collapse_over`` problem instances: sections after the first start collapsed; more than
    ``lazy_over`` figures: images load lazily (when their section is opened).  ``figures=False`` skips the
    plots (tables only: fast, for very large runs or tests).  Figures are drawn in ``workers`` processes while the
    tables are built (0 or 1: in this process; None: every available CPU when the report has many figures, as
    ``stochgrad report`` does); the file is the same either way.  Worker processes import the calling script's
    main module (as :mod:`multiprocessing` does): a script passing ``workers`` keeps its top-level code under
    ``if __name__ == "__main__":``.

    ``rank_by`` ("time" | "evals" | "samples", :mod:`harness.results.ranking`) chooses what every "best" is
    measured by; None: the first run's recorded ``rank_by`` (its suite's ``[suite] rank_by``), else "time".
    """
    t0 = R.timer()
    run_dirs = [Path(d) for d in run_dirs]
    recs = [RC.is_recommend_run(d) for d in run_dirs]
    if any(recs):
        if not all(recs):
            raise RunDirError("report recommend runs apart from benchmark and training runs (meta.json kind differs)")
        return RC.write_html(run_dirs, out)
    kinds = [is_training_run(d) for d in run_dirs]
    if any(kinds):
        if not all(kinds):
            raise RunDirError("report training runs and benchmark runs separately (meta.json kind differs)")
        return Path(write_html([str(d) for d in run_dirs], str(out)))
    df, infos = load_runs(run_dirs)
    rank_by = resolve_rank_by(rank_by, [i.meta for i in infos])
    df = W.relabel_groups(df)
    ctx: dict = {
        "title": "stochgrad report — " + ", ".join(str(i.meta.get("suite", "?")) for i in infos),
        "generated": R.now(),
        "runs": [{"id": i.run_id, "items": R.run_header(i, df)} for i in infos],
        "health": [R.health(i) for i in infos],
        "multi_run": len(infos) > 1,
        "empty": df.empty,
        "rank_by": rank_by,
        "rank_label": RANK_LABELS[rank_by],
        "rank_measure": RANK_MEASURES[rank_by],
        "rank_labels": RANK_LABELS,
    }
    if not df.empty:
        pooled, agree = prepare(df)
        asked, rank_by = rank_by, in_force(df, pooled, rank_by)
        ctx.update(
            rank_by=rank_by,
            rank_label=RANK_LABELS[rank_by],
            rank_measure=RANK_MEASURES[rank_by],
            rank_fallback="" if asked == rank_by else f"{RANK_LABELS[asked]} was asked for, but {UNAVAILABLE[asked]}",
        )
        heat, heat_missing = S.heat_maps(df, pooled, rank_by)
        wg = W.workload_groups(df)
        ctx.update(
            summary_health=S.health_line(df, infos, agree),
            bias_family=bias_family(df),
            heat=heat,
            heat_missing=heat_missing,
            families=first_screen(df[~df["group"].isin(wg)], pooled[~pooled["group"].isin(wg)], rank_by),
            oracle_refs=sorted(set(df.loc[df["oracle"].astype(bool) & ~df["group"].isin(wg), "estimator"])),
            verdict_html=verdict_html,
            gradient=S.gradient_css(),
            heat_css=Markup(S.heat_css()),
            ticks=S.legend_ticks(),
        )
        n_inst = int(df[["group", "setting", "dim"]].drop_duplicates().shape[0])
        collapse = n_inst > collapse_over
        sections = build_sections(
            df, pooled, agree, collapse=collapse, figures=figures, workers=workers, rank_by=rank_by
        )
        anchors = {i.key: i.id for s in sections for i in s.instances}
        n_fig = sum(len(s.figures) + sum(len(i.figures) for i in s.instances) for s in sections)
        ctx.update(
            sections=sections,
            overview=overview_table(pooled, df, anchors, rank_by),
            agreement=R.agreement_block(agree, figures=figures),
            catalog=R.catalog_table(df, [i.meta for i in infos]),
            n_rows=len(df),
            n_cells=int(df.drop_duplicates(["run_id", "cell_key"]).shape[0]),
            n_instances=n_inst,
            n_figures=n_fig,
            fig_bytes=sum(f.nbytes for s in sections for f in s.figures + [g for i in s.instances for g in i.figures]),
            collapsed=collapse,
            lazy=n_fig > lazy_over,
        )
        wl = W.build(df, figures=figures, rank_by=rank_by)
        ctx.update(workloads=wl, wl_verdict=W.verdict_text)
        ctx["n_figures"] += sum(len(b.figures) for b in wl)
        ctx["fig_bytes"] += sum(f.nbytes for b in wl for f in b.figures)
        ctx["lazy"] = ctx["n_figures"] > lazy_over
    ctx["build_seconds"] = R.timer() - t0
    return R.write(Path(out), R.render(ctx))


__all__ = ["build_report"]
