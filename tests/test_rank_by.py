"""Every "best" is measured at equal cost (issue 19 C): ``rank_by`` = time (default) | evals | samples.

Synthetic run directories whose three rankings name three different winners check each place that names a best
(first-screen family verdicts, heat maps, leaderboards, overview, workloads' which-estimator) and the line saying
where the equal-L winner differs; family verdicts count problems (one problem cannot carry a family, an exact win is
marked "exact", fewer than half reads "depends on the problem"); the precedence argument > suite > default and bad
values (exit 2); runs made before ``variance_per_eval`` existed.  The numbers are chosen, not sampled: no seeds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stochgrad as sg
from harness.cli.main import main as cli
from harness.report import build_report
from harness.report.data import load_runs
from harness.report.ranking import family_verdicts, first_screen, measure_frame
from harness.report.sections import prepare
from harness.report.which_estimator import which_estimator
from harness.results.ranking import resolve_rank_by
from harness.suite.expand import expand
from harness.suite.limits import SuiteError

# (variance, time per call, evaluations per estimate): equal time -> "fast", equal evaluations -> "frugal",
# equal L -> "lowvar"; "peek" is an oracle and the lowest on every measure.  "skewed" (declared biased, also lowest)
# joins in test_biased_estimator_never_named: leaderboards rank biased estimators, badged (the report's rule)
SPECS = {
    "score_function": (100.0, 1e-5, 1),
    "fast": (10.0, 1e-6, 10),
    "frugal": (20.0, 1e-5, 1),
    "lowvar": (1.0, 1e-3, 50),
    "peek": (1e-3, 1e-7, 1),
}
SKEWED = ("skewed", (1e-3, 1e-7, 1))
ORACLES = {"peek"}
BIASED = {"skewed"}
WINNER = {"time": "fast", "evals": "frugal", "samples": "lowvar"}


def _row(est: str, dist: str, setting: int, var: float, t: float, evals: float | None, L: int = 4) -> dict:
    se = 0.01 * var
    row = {
        "suite": "synthetic",
        "estimator": est,
        "backend": "numpy",
        "device": "cpu",
        "distribution": dist,
        "objective": "quadratic",
        "dim": 1,
        "n_samples": L,
        "dtype": "float64",
        "family": est,
        "unbiased": est not in BIASED,
        "oracle": est in ORACLES,
        "cell_key": f"{dist}|{setting}|{est}|{L}",
        "problem": f"{dist}(a={setting})/quadratic/D=1",
        "param": "loc",
        "n_replicates": 2000,
        "n_replicates_used": 2000.0,
        "exact_grad": 1.0,
        "grad_mean": 1.0,
        "bias": 0.0,
        "bias_ci_low": 0.0,
        "bias_ci_high": 0.01,
        "bias_z": 0.0,
        "bias_p": 0.5,
        "bias_p_judged": 0.5,
        "variance": var,
        "variance_se": se,
        "variance_ci_low": var - 1.96 * se,
        "variance_ci_high": var + 1.96 * se,
        "time_median_s": t,
        "time_iqr_s": 0.01 * t,
        "time_samples": 50,
        "efficiency": var * t,
        "efficiency_ci_low": var * t * 0.97,
        "efficiency_ci_high": var * t * 1.03,
        "nan_fraction": 0.0,
    }
    if evals is not None:
        row.update(
            variance_per_eval=var * evals,
            variance_per_eval_ci_low=(var - 1.96 * se) * evals,
            variance_per_eval_ci_high=(var + 1.96 * se) * evals,
        )
    return row


def write_run(out: Path, rows: list[dict], **meta: object) -> Path:
    """A run directory (results.parquet + meta.json) holding ``rows``."""
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.insert(0, "run_id", out.name)
    df.to_parquet(out / "results.parquet", index=False)
    n = int(df["cell_key"].nunique())
    info = {"run_id": out.name, "suite": "synthetic", "status": "complete", "cells_total": n, "cells_done": n}
    (out / "meta.json").write_text(json.dumps({**info, **meta}))
    return out


def differing_rows(evals: bool = True, n_problems: int = 3, biased: bool = False) -> list[dict]:
    specs = {**SPECS, **dict([SKEWED])} if biased else SPECS
    return [
        _row(e, "normal", k, v * (1 + 0.001 * k), t, n if evals else None)
        for k in range(n_problems)
        for e, (v, t, n) in specs.items()
    ]


def _frames(rows: list[dict], tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    df, _ = load_runs([write_run(tmp_path / "frames", rows)])
    pooled, _ = prepare(df)
    return df, pooled


def _first_screen_html(html: str) -> str:
    return html[html.index('id="summary"') : html.index('<div class="heatwrap">')]


@pytest.mark.parametrize("rank_by", ["time", "evals", "samples"])
def test_each_place_names_the_winner_of_the_ranking(tmp_path: Path, rank_by: str) -> None:
    run = write_run(tmp_path / "run", differing_rows())
    html = build_report([run], tmp_path / "r.html", figures=False, rank_by=rank_by).read_text()
    label = {"time": "at equal time", "evals": "at equal evaluations", "samples": "at equal L"}[rank_by]
    top = _first_screen_html(html)
    # the first-screen verdict: the ranking's winner, on every problem, labelled with the ranking
    m = re.search(
        r'<span class="rank">([^<]+)</span> <span class="pick">([^<]+)</span> <span class="kofn">([^<]+)<', top
    )
    assert m and m.groups() == (label, WINNER[rank_by], "best or tied on 3 of 3"), m and m.groups()
    beside = re.findall(r'<span class="rank">([^<]+)</span> <span class="pick2">([^<]+)</span>', top)
    others = [r for r in ("time", "evals") if r != rank_by]
    assert [b[1] for b in beside] == [WINNER[r] for r in others]
    # one line where the equal-L winner differs from the equal-cost one (equal time where equal L is in force)
    contrast = "time" if rank_by == "samples" else "samples"
    differs = re.findall(r'<span class="differs">([^<]+)</span>', top)
    assert len(differs) == 1 and f"the winner would be {WINNER[contrast]}" in differs[0]
    # never the oracle (named only as a reference)
    assert (
        "peek" not in re.sub(r"Oracle references[^<]*", "", top)
        and "Oracle references (never recommended): peek." in top
    )
    # heat maps: the ranking in force first; its winner is the best (ratio 1) in that map
    heat = html[html.index('<table class="heat"') : html.index("</table>", html.index('<table class="heat"'))]
    blocks = re.findall(r'<tr class="hm-block"><th[^>]*>([^<]+)<', heat)
    assert len(blocks) == 3 and label in blocks[0]
    first = heat.split('class="hm-block"')[1]
    assert f'title="{WINNER[rank_by]} on normal × quadratic: 1× the best' in first
    # leaderboards: the ranking's board first, its best row the winner
    board = html[html.index("leaderboard by") :]
    assert board[: board.index("</h4>")].endswith(label)
    table = board[: board.index("</table>")]
    best = re.findall(r'<tr><th>([^<]+?)(?: <span[^>]*>[^<]*</span>)?</th><td class="best">', table)
    assert best == [WINNER[rank_by]], best
    # overview: the first pick column is the ranking's
    ov = html[html.index('id="overview"') : html.index('id="problems"')]
    first_pick = re.search(r'<td><span class="pick">([^<]+)</span>', ov)
    assert first_pick and first_pick.group(1) == WINNER[rank_by]


@pytest.mark.parametrize("rank_by", ["time", "evals", "samples"])
def test_biased_estimator_never_named(tmp_path: Path, rank_by: str) -> None:
    """Declared biased and lowest on every measure: never a verdict or an overview pick (it keeps its badged place
    in the leaderboards, as before)."""
    run = write_run(tmp_path / "run", differing_rows(biased=True))
    html = build_report([run], tmp_path / "r.html", figures=False, rank_by=rank_by).read_text()
    assert "skewed" not in _first_screen_html(html)
    ov = html[html.index('id="overview"') : html.index('id="problems"')]
    assert "skewed" not in ov and f'<span class="pick">{WINNER[rank_by]}</span>' in ov


def test_default_is_equal_time(tmp_path: Path) -> None:
    df, pooled = _frames(differing_rows(), tmp_path)
    (blk,) = first_screen(df, pooled, resolve_rank_by(None, [{}]))
    assert blk.primary.rank_by == "time" and blk.primary.pick == "fast"
    assert [b.pick for b in blk.beside] == ["frugal"]
    assert blk.differs.startswith("at equal L the winner would be lowvar")
    assert blk.primary.factor == pytest.approx(100.0, rel=0.01)  # 1e-3 / 1e-5, median over three problems


def _family(rows: list[dict], tmp_path: Path, rank_by: str = "samples"):
    df, pooled = _frames(rows, tmp_path)
    (v,) = family_verdicts(measure_frame(df, pooled, rank_by), rank_by)
    return v


def test_one_exact_problem_does_not_carry_the_family(tmp_path: Path) -> None:
    """The D=1 REBAR toy: rebar is exact there (an enormous factor at equal L); on the three other problems disarm is
    best.  The verdict is disarm, 3 of 4; rebar's exact win is counted as a win marked exact, never a factor."""
    rows = []
    for k in range(4):
        rows.append(_row("score_function", "bernoulli", k, 100.0, 1e-5, 1))
        rows.append(_row("disarm", "bernoulli", k, 2.0, 1e-5, 2))
        rows.append(_row("rebar", "bernoulli", k, 1e-32 if k == 0 else 8.0, 3e-5, 3))
    v = _family(rows, tmp_path)
    assert (v.pick, v.k, v.n, v.n_exact) == ("disarm", 3, 4, 0)
    assert v.factor == pytest.approx(50.0) and v.n_factor == 4
    toy = v.winners[0]
    assert toy.winners == ["rebar"] and toy.exact == ["rebar"] and "(exact)" in toy.text()
    assert "best or tied on 3 of 4" in v.text()
    # rebar, were it the pick, shows the exact win as such and its factor over the other problems only
    rows = [r for r in rows if r["estimator"] != "disarm"]
    v = _family(rows, tmp_path / "b")
    assert (v.pick, v.k, v.n_exact, v.n_factor) == ("rebar", 4, 1, 3)
    assert np.isfinite(v.fmax) and v.fmax == pytest.approx(12.5)
    assert "exact on 1" in v.text() and "inf" not in v.text()


def test_depends_on_the_problem(tmp_path: Path) -> None:
    """Four problems, four different winners: nobody is best or tied on half; the verdict lists the winners."""
    names = ["a", "b", "c", "d"]
    rows = []
    for k in range(4):
        rows.append(_row("score_function", "gamma", k, 100.0, 1e-5, 1))
        for j, e in enumerate(names):
            rows.append(_row(e, "gamma", k, 1.0 if j == k else 5.0 + j, 1e-5, 1))
    v = _family(rows, tmp_path)
    assert v.depends and v.pick is None and v.name() == "depends on the problem"
    assert [w.best for w in v.winners] == names
    assert "depends on the problem" in v.text() and all(f"→ {e}" in v.text() for e in names)
    # power: the same family with "a" also winning a second problem (2 of 4 = half) names "a"
    rows = [
        r if not (r["estimator"] == "a" and r["problem"].startswith("gamma(a=1)")) else {**r, "variance": 0.5}
        for r in rows
    ]
    for r in rows:
        if r["estimator"] == "a" and r["problem"].startswith("gamma(a=1)"):
            r.update(variance_ci_low=0.49, variance_ci_high=0.51, variance_se=0.005)
    v = _family(rows, tmp_path / "half")
    assert not v.depends and (v.pick, v.k, v.n) == ("a", 2, 4)


def test_overlapping_intervals_are_ties(tmp_path: Path) -> None:
    """Best or tied: an estimator whose 95% interval overlaps the best's counts the problem too."""
    rows = []
    for k in range(2):
        rows.append(_row("score_function", "normal", k, 100.0, 1e-5, 1))
        rows.append(_row("x", "normal", k, 1.0, 1e-5, 1))
        rows.append(_row("y", "normal", k, 1.015, 1e-5, 1))  # intervals ±2%: overlap
        rows.append(_row("z", "normal", k, 1.2, 1e-5, 1))  # separate
    v = _family(rows, tmp_path)
    assert (v.pick, v.k, v.tied) == ("x", 2, ["y"])
    assert all(w.winners == ["x", "y"] for w in v.winners)


def test_rank_by_precedence(tmp_path: Path) -> None:
    """Argument > the suite's (meta.json) > "time"; an unknown recorded value is ignored."""
    assert resolve_rank_by(None, []) == "time"
    assert resolve_rank_by(None, [{"rank_by": "evals"}]) == "evals"
    assert resolve_rank_by("samples", [{"rank_by": "evals"}]) == "samples"
    assert resolve_rank_by(None, [{"rank_by": "bogus"}]) == "time"
    run = write_run(tmp_path / "run", differing_rows(), rank_by="evals")
    html = sg.report(run, tmp_path / "suite.html").read_text()
    assert 'Which estimator? <span class="muted">(at equal evaluations' in html
    html = sg.report(run, tmp_path / "arg.html", rank_by="samples").read_text()
    assert 'Which estimator? <span class="muted">(at equal L' in html
    html = sg.load_run(run).report(tmp_path / "run.html", rank_by="time").read_text()
    assert 'Which estimator? <span class="muted">(at equal time' in html


def test_bad_rank_by(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", differing_rows())
    with pytest.raises(ValueError, match=r"unknown rank_by 'cost'; valid: \['time', 'evals', 'samples'\]"):
        sg.report(run, tmp_path / "x.html", rank_by="cost")
    assert not (tmp_path / "x.html").exists()
    with pytest.raises(SystemExit) as exc:
        cli(["report", str(run), "-o", str(tmp_path / "y.html"), "--rank-by", "cost"])
    assert exc.value.code == 2 and "invalid choice: 'cost'" in capsys.readouterr().err
    assert not (tmp_path / "y.html").exists()
    suite = {"suite": {"name": "s", "rank_by": "cost"}, "sweep": [{"estimators": ["pathwise"], "problems": "examples"}]}
    with pytest.raises(SuiteError) as err:
        expand(tmp_path / "s.toml", data=suite)
    assert err.value.key == "suite.rank_by" and "valid: ['time', 'evals', 'samples']" in err.value.message
    (tmp_path / "s.toml").write_text('[suite]\nname = "s"\nrank_by = "cost"\n[[sweep]]\nestimators = ["pathwise"]\n')
    assert cli(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "never")]) == 2
    err_text = capsys.readouterr().err
    assert "s.toml" in err_text and "suite.rank_by" in err_text and "valid:" in err_text
    assert not (tmp_path / "never").exists()


def test_suite_rank_by_is_recorded_and_used(tmp_path: Path) -> None:
    """A tiny real run: ``[suite] rank_by`` lands in meta.json and the report ranks by it (or, where the run has
    no evaluation counts, says it was asked for and falls back)."""
    (tmp_path / "s.toml").write_text(
        '[suite]\nname = "s"\nreplicates = 200\ntiming = false\nrank_by = "evals"\n'
        '[[sweep]]\nestimators = ["pathwise", "score_function"]\nbackends = ["numpy"]\nn_samples = [2]\n'
        '[[sweep.problems]]\ndistribution = "normal"\nparams = { loc = 0.5, scale = 1.5 }\nobjective = "quadratic"\n'
        "dims = [1]\n"
    )
    assert cli(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["rank_by"] == "evals"
    html = sg.report(tmp_path / "run", tmp_path / "r.html").read_text()
    assert "(at equal evaluations" in html or "at equal evaluations was asked for, but" in html


def test_old_run_without_evaluation_counts(tmp_path: Path) -> None:
    """A run made before ``variance_per_eval``: the report builds, names the equal-evaluation ranking unavailable,
    falls back from rank_by="evals" and says so; which_estimator reports it unavailable."""
    run = write_run(tmp_path / "old", differing_rows(evals=False))
    html = build_report([run], tmp_path / "t.html", figures=False).read_text()
    top = _first_screen_html(html)
    assert "Not available in this run — at equal evaluations: the run records no evaluation counts" in top
    assert re.search(r'<span class="pick">fast</span>', top) and "pick2" not in top
    assert "leaderboard by variance × evaluations" not in html
    html = build_report([run], tmp_path / "e.html", figures=False, rank_by="evals").read_text()
    assert "at equal evaluations was asked for, but the run records no evaluation counts" in html
    assert "(at equal time: variance × time per call)" in html


def _workload_rows(evals: bool = True) -> pd.DataFrame:
    rows = []
    for ck in (0, 100):
        for e, (v, t, n) in SPECS.items():
            r = _row(e, "bernoulli", 0, v, t, n if evals else None)
            r.update(workload="vae", workload_config="{}", checkpoint=ck, param="encoder", exact_method="enumeration")
            r.update(variance_total=10 * v, variance_total_ci_low=9.8 * v, variance_total_ci_high=10.2 * v)
            r["bias_z_truth"] = 0.0
            rows.append(r)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("rank_by", ["time", "evals", "samples"])
def test_which_estimator_ranks_by_cost(rank_by: str) -> None:
    table = which_estimator(_workload_rows(), rank_by=rank_by, catalog=[{"name": "peek", "oracle": True}])
    for _, row in table.iterrows():
        assert row["best"] == f"{WINNER[rank_by]}[numpy]"
        assert (row["at_equal_time"], row["at_equal_evals"], row["at_equal_L"]) == (
            "fast[numpy]",
            "frugal[numpy]",
            "lowvar[numpy]",
        )
        other = "at equal time" if rank_by == "samples" else "at equal L"
        assert row["differs"].startswith(f"{other} the winner would be")
    old = which_estimator(_workload_rows(evals=False), rank_by="time")
    assert set(old["at_equal_evals"]) == {"unavailable"} and set(old["best"]) == {"fast[numpy]"}


@pytest.mark.parametrize("rank_by", ["time", "evals", "samples"])
def test_workload_section_ranks_by_cost(tmp_path: Path, rank_by: str) -> None:
    """The report's "which estimator" per checkpoint and its first-screen line: the ranking's winner, the others
    beside it (marked ≠ where they differ), and the differs line."""
    d = _workload_rows()
    d["n_coords"], d["truth_se_max"], d["problem"] = 10, 0.0, "vae(latent_dim=2)/val[2]@" + d["checkpoint"].astype(str)
    d["cell_key"] = d["cell_key"] + "|" + d["checkpoint"].astype(str)
    d["efficiency_ci_low"], d["efficiency_ci_high"] = d["efficiency"] * 0.97, d["efficiency"] * 1.03
    run = write_run(tmp_path / "wl", d.to_dict("records"))
    html = build_report([run], tmp_path / "w.html", figures=False, rank_by=rank_by).read_text()
    top = html[: html.index('id="health"')]
    m = re.search(r'<li class="wl-verdict">.*?<span class="pick">([^<]+)</span>([^<]+)', top, re.S)
    label = {"time": "at equal time", "evals": "at equal evaluations", "samples": "at equal L"}[rank_by]
    assert m and m.group(1) == WINNER[rank_by] and m.group(2).startswith(f" {label}, at step 100"), m and m.groups()
    contrast = "time" if rank_by == "samples" else "samples"
    assert f"the winner would be {WINNER[contrast]}" in top
    which = html[html.index('class="plain workloads-which"') :]
    which = which[: which.index("</table>")]
    assert re.findall(r'<td><span class="pick">([^<]+)</span></td>', which) == [WINNER[rank_by]] * 2
    assert which.count("≠") == 4  # two checkpoints × two other rankings, each with a different winner


def test_pooled_evaluations_come_from_the_count(tmp_path: Path) -> None:
    """Pooled over platforms, variance_per_eval = pooled variance × the cell's evaluations: the ``evals`` column where
    the run has it (an exact estimator's 0 variance keeps its count), else variance_per_eval / variance."""
    rows = []
    for b, v in (("numpy", 2.0), ("torch", 4.0)):
        r = _row("x", "normal", 0, v, 1e-5, 3)
        rows.append({**r, "backend": b, "evals": 3.0})
        rows.append({**_row("ex", "normal", 0, 0.0, 1e-5, 5), "backend": b, "evals": 5.0})
    df, pooled = _frames(rows, tmp_path)
    x = pooled[pooled["estimator"] == "x"].iloc[0]
    assert x["evals"] == 3.0 and x["variance_per_eval"] == pytest.approx(3.0 * x["variance"]) and x["variance"] == 3.0
    ex = pooled[pooled["estimator"] == "ex"].iloc[0]
    assert ex["evals"] == 5.0 and ex["variance_per_eval"] == 0.0 and ex["exact_est"]
    old = [{k: v for k, v in r.items() if k != "evals"} for r in rows]
    _, pooled = _frames(old, tmp_path / "old")
    assert pooled.loc[pooled["estimator"] == "x", "evals"].iloc[0] == 3.0  # from the ratio


def test_verdicts_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m harness.report.verdicts``: the first screen's verdicts as text; a bad directory exits 2."""
    from harness.report.verdicts import main

    run = write_run(tmp_path / "run", differing_rows(), rank_by="evals")
    assert main([str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("normal at equal evaluations: frugal — best or tied on 3 of 3")
    assert out[1].startswith("  beside: normal at equal time: fast") and "would be lowvar" in out[2]
    assert main([str(run), "--rank-by", "samples"]) == 0
    assert capsys.readouterr().out.startswith("normal at equal L: lowvar")
    assert main([str(tmp_path / "missing")]) == 2
    assert "not a stochgrad run directory" in capsys.readouterr().err
