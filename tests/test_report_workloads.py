"""The report's "Model workloads" section, on a tiny real workload run (vae_bernoulli, 4 latents, 2 checkpoints).

The run: DisARM and RLOO on numpy, R = 200, checkpoints 0 and 5, batch 2, no timing (about 10 s with a fresh
checkpoint cache in a temporary STOCHGRAD_CACHE).  Expected values come from results.parquet, recomputed here
independently of harness/report/workloads.py; tie and bias-verdict branches are exercised on copies of the run
whose rows are edited (the report is a pure function of the run directory).
"""

from __future__ import annotations

import math
import re
import shutil
import urllib.parse
from html import unescape
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from harness.cli.main import main as cli
from harness.report import build_report
from harness.report.data import Z95
from harness.report.sections import anchor
from harness.report.tables import fmt
from harness.runs.store import load_run

SUITE = """[suite]
name = "wl-report"
replicates = 200

[[sweep]]
estimators = ["disarm", "score_function_rloo"]
backends = ["numpy"]
n_samples = [2]

[[sweep.workloads]]
name = "vae_bernoulli"
config = { latent_dim = 4 }
checkpoints = [0, 5]
batch_size = 2
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wlrep")
    (d / "s.toml").write_text(SUITE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STOCHGRAD_CACHE", str(d / "cache"))
        assert cli(["run", str(d / "s.toml"), "--out", str(d / "run"), "--no-timing"]) == 0
    return d / "run"


def _html(run: Path, name: str = "report.html") -> str:
    return build_report([run], run.parent / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def html(run) -> str:
    return _html(run)


def _label(df: pd.DataFrame) -> str:
    labels = set(df["problem"].str.replace(r"@\d+", "", regex=True))
    assert len(labels) == 1, labels
    return labels.pop()


def _section(html: str, sid: str) -> str:
    i = html.index(f'id="{sid}"')
    return html[i : html.index("</details>", i)]


def _rows(table: str) -> list[list[str]]:
    """The body rows of an HTML table as lists of cell texts (tags removed, entities decoded)."""
    body = table[table.index("<tbody>") : table.index("</table>")]
    return [
        [unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def _which_rows(section: str) -> list[list[str]]:
    return _rows(section[section.index('class="plain workloads-which"') :])


def _per_eval(df: pd.DataFrame) -> bool:
    """Whether the run counted evaluations (then, with timing off, "which estimator" ranks at equal evaluations)."""
    return "evals" in df.columns and bool(np.isfinite(df["evals"].astype(float)).all())


def expected_which(df: pd.DataFrame) -> dict[int, dict]:
    """Per checkpoint, from the raw rows: best / runner-up by encoder total variance (× evaluations per estimate
    when the run counted them: the ranking in force with timing off), tie rule, factor vs RLOO."""
    out = {}
    enc = df[df["param"] == "encoder"].copy()
    k = enc["evals"].astype(float) if _per_eval(df) else 1.0  # exact counts: the interval scales with them
    for c in ("variance_total", "variance_total_ci_low", "variance_total_ci_high"):
        enc[c] = enc[c] * k
    for ck, g in enc.groupby("checkpoint"):
        g = g.sort_values("variance_total")
        b, r = g.iloc[0], g.iloc[1]
        tied = r["variance_total_ci_low"] <= b["variance_total_ci_high"]
        lse = [
            (math.log(x["variance_total_ci_high"]) - math.log(x["variance_total_ci_low"])) / (2 * Z95) for x in (b, r)
        ]
        base = g[g["estimator"] == "score_function_rloo"].iloc[0]
        f = base["variance_total"] / b["variance_total"]
        s = math.hypot(*lse)
        out[int(ck)] = {
            "best": b["estimator"],
            "runner": r["estimator"],
            "tied": bool(tied),
            "factor": None
            if b["estimator"] == "score_function_rloo"
            else (f, f * math.exp(-Z95 * s), f * math.exp(Z95 * s)),
            "best_var": b["variance_total"],
        }
    return out


def test_section_present_with_figure_and_alt_text(run, html) -> None:
    df, _ = load_run(run)
    sid = anchor("workload", _label(df))
    assert '<h2 id="workloads">Model workloads</h2>' in html and 'href="#workloads"' in html
    sec = _section(html, sid)
    figs = re.findall(r"<figure class=\"fig-workload\">\s*<img src='([^']+)' alt=\"([^\"]+)\"", sec)
    assert len(figs) == 1, "one figure per workload"
    src, alt = figs[0]
    for needle in (
        "encoder-weight gradient",
        "η-gradient",
        "training checkpoint (0, 5)",
        "disarm",
        "score_function_rloo",
        "log scale",
        "95% confidence intervals",
    ):
        assert needle in alt, needle
    assert "efficiency panel" not in alt, "timing was off: no efficiency panel"
    svg = urllib.parse.unquote(src.removeprefix("data:image/svg+xml,"))
    assert "<svg" in svg and len(re.findall(r"<(path|use|text)\b", svg)) > 20
    assert "checkpoints 0, 5" in sec and "truth: enumeration" in sec and "latent_dim=4" in sec


def test_which_estimator_table_matches_the_data(run, html) -> None:
    df, _ = load_run(run)
    exp = expected_which(df)
    rows = _which_rows(_section(html, anchor("workload", _label(df))))
    assert [int(r[0]) for r in rows] == sorted(exp)
    for r in rows:
        e = exp[int(r[0])]
        assert r[1] == e["best"]
        assert r[2].startswith(fmt(e["best_var"])), (r[2], e)
        assert r[3].startswith(e["runner"])
        assert r[4] == (
            f"tied with {e['runner']} (95% intervals overlap)" if e["tied"] else "clear (intervals separate)"
        )
        if e["factor"] is None:
            assert r[5] == "—"
        else:
            f, lo, hi = e["factor"]
            assert r[5] == f"{fmt(f)} [{fmt(lo)}, {fmt(hi)}]"
    # the first-screen verdict: best at the last checkpoint, with the factor vs the baseline and a link
    top = html[: html.index('id="health"')]
    last = exp[max(exp)]
    m = re.search(
        r'<li class="wl-verdict"><b class="dist"><a href="#(\w+)">([^<]+)</a></b><span><span class="pick">([^<]+)'
        r"</span>([^<]+)</span>",
        top,
    )
    assert m and m.group(1) == anchor("workload", _label(df)) and m.group(2) == _label(df)
    # timing off: no equal-time measure, so "which estimator" falls back to the next ranking the run has and says so
    label = "at equal evaluations" if _per_eval(df) else "at equal L"
    assert m.group(3) == last["best"] and m.group(4).startswith(f" {label}, at step {max(exp)}")
    # heat maps: one column per workload (linked to its Problems section); no family verdict built from its rows
    group = f"{df['workload'].iloc[0]} × {df['objective'].iloc[0]}"
    assert f'<a href="#{anchor(group)}"><span>{group}</span></a>' in top and f'id="{anchor(group)}"' in html
    assert '<li><b class="dist">' not in top, "workload rows make workload verdicts only"
    if last["factor"] is not None:
        f, lo, hi = last["factor"]
        assert f"×{fmt(f)} [{fmt(lo)}, {fmt(hi)}] vs score_function_rloo" in m.group(4)


def test_bias_verdicts_ties_and_imprecise_reference(run, tmp_path) -> None:
    """Edited copy: an overlapping interval makes a tie; a too-imprecise truth gets no verdict; a large z is a bias
    that removes the estimator from the which-estimator choice."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    df = pd.read_parquet(copy / "results.parquet")
    enc = df["param"] == "encoder"
    df.loc[enc, "truth_too_imprecise"] = False
    # checkpoint 0: move the worse estimator's interval so that it overlaps the best's
    g0 = df[enc & (df["checkpoint"] == 0)].sort_values("variance_total")
    bi, wi = g0.index[0], g0.index[1]
    df.loc[wi, "variance_total_ci_low"] = df.loc[bi, "variance_total_ci_high"] * 0.99
    # checkpoint 5: the best has a too-imprecise reference, the other a large z (biased against the truth)
    g5 = df[enc & (df["checkpoint"] == 5)].sort_values("variance_total")
    b5, w5 = g5.index[0], g5.index[1]
    df.loc[b5, "truth_too_imprecise"] = True
    df.loc[b5, "bias_z"] = 50.0  # the truth-blind z: ignored when the reference is too imprecise
    df.loc[w5, "bias_z_truth"] = 50.0
    df.to_parquet(copy / "results.parquet")
    html = _html(copy)
    sec = _section(html, anchor("workload", _label(df)))
    rows = {int(r[0]): r for r in _which_rows(sec)}
    assert rows[0][4] == f"tied with {df.loc[wi, 'estimator']} (95% intervals overlap)"
    assert rows[5][1] == df.loc[b5, "estimator"] and rows[5][4] == "only eligible estimator"
    bias = sec[sec.index("workloads-bias") :]
    cells = _rows(bias)
    verdict = {(int(c[0]), c[1]): c[-1] for c in cells}
    assert verdict[(5, df.loc[b5, "estimator"])] == "reference too imprecise to judge"
    assert verdict[(5, df.loc[w5, "estimator"])].startswith("bias detected (z > ")
    # checkpoint 0, unedited z: the threshold is Bonferroni over the judged coordinates of the workload
    judged = df[df["exact_method"].fillna("").ne("") & ~df["truth_too_imprecise"].astype(bool)]
    zc = NormalDist().inv_cdf(1 - 0.05 / (2 * int(judged["n_coords"].sum())))
    for i in g0.index:
        want = f"bias detected (z > {zc:.2f})" if df.loc[i, "bias_z_truth"] > zc else "no bias detected"
        assert verdict[(0, df.loc[i, "estimator"])] == want
    assert 'class="bad">bias detected' in bias
    # the heat maps use the same truth-aware judgement
    group = f"{df['workload'].iloc[0]} × {df['objective'].iloc[0]}"
    tips = dict(re.findall(rf'title="([^"]+) on {re.escape(group)}: ([^"]+)"', html[: html.index('id="health"')]))
    assert tips[df.loc[w5, "estimator"]].endswith("; biased")
    assert "biased" not in tips[df.loc[b5, "estimator"]]


def test_no_section_without_workload_rows(run, tmp_path) -> None:
    """A run with no workload rows (the same rows with the workload columns removed) has no workloads section."""
    copy = tmp_path / "plain"
    shutil.copytree(run, copy)
    df = pd.read_parquet(copy / "results.parquet")
    wl_cols = [c for c in df.columns if c.startswith(("workload", "variance_total", "truth_"))]
    df.drop(columns=wl_cols + ["checkpoint", "n_coords", "per_example", "bias_z_truth"]).to_parquet(
        copy / "results.parquet"
    )
    html = _html(copy)
    assert 'id="workloads"' not in html and 'class="wl-verdict"' not in html and 'class="fig-workload"' not in html
    assert 'id="problems"' in html, "the rest of the report is still there"
