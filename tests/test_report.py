"""HTML report and run comparison, on a small real run made by the harness (tests.support.demo.small_run).

Checks: every figure kind present and a non-empty, well-formed SVG/PNG; the header carries the run's
identity; per-problem leaderboards with biased estimators marked; no external URL anywhere (attributes, CSS,
inside the SVGs); hostile estimator / suite / hyperparameter strings render as text; older runs with missing
columns and NaN timing still render; `compare` flags a doubled variance (and only that) and lists unmatched
cells; a synthetic run with hundreds of cells collapses its sections and loads images lazily.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from harness.cli.main import main as cli
from harness.report import build_report
from harness.report.compare import compare_runs
from tests.support.demo import XSS_HYPER, XSS_NAME, small_run, synthetic_run

FIGURE_KINDS = {"variance_vs_n_samples", "variance_vs_dim", "time_vs_n_samples", "time_vs_dim", "frontier", "bias"}
URL_ATTRS = {"src", "href", "action", "srcset", "poster", "data", "formaction", "xlink:href"}


class Page(HTMLParser):
    """Tags with attributes, visible text and script bodies of an HTML document."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)

    def figures(self) -> list[tuple[str, str]]:
        """(kind, image src) for each <figure class="fig-KIND"><img>."""
        out, kind = [], None
        for tag, a in self.tags:
            if tag == "figure":
                kind = a.get("class", "").removeprefix("fig-")
            elif tag == "img" and kind is not None:
                out.append((kind, a.get("src", "")))
                kind = None
        return out


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return small_run(tmp_path_factory.mktemp("rep") / "run", backends=("numpy", "torch"), jax=True, R=300)


@pytest.fixture(scope="module")
def report(run) -> tuple[Path, str, Page]:
    # the hostile estimator is no longer registered: its catalog entry (hostile family, hyperparameter,
    # reference) comes from meta.json, so the report is a pure function of the run directory
    out = build_report([run], run.parent / "report.html")
    html = out.read_text(encoding="utf-8")
    return out, html, Page(html)


def _decode(src: str) -> bytes:
    """The bytes of an inline figure: a UTF-8 SVG data URI or a base64 PNG (the parser has undone &amp;)."""
    if src.startswith("data:image/svg+xml,"):
        body = src.removeprefix("data:image/svg+xml,")
        assert "#" not in body and "'" not in body, "unencoded fragment or quote in an SVG data URI"
        return urllib.parse.unquote(body).encode()
    m = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", src)
    assert m, f"figure is not an inline SVG/PNG: {src[:60]!r}"
    return base64.b64decode(m.group(1))


def test_figures_present_and_nonempty(report) -> None:
    _, _, page = report
    figs = page.figures()
    kinds = {k for k, _ in figs}
    assert kinds >= FIGURE_KINDS, f"missing figure kinds: {FIGURE_KINDS - kinds}"
    for kind, src in figs:
        data = _decode(src)
        if data.startswith(b"\x89PNG"):
            assert len(data) > 2000, kind
            continue
        svg = data.decode()
        assert "<svg" in svg and svg.rstrip().endswith("</svg>"), kind
        assert len(re.findall(r"<(path|use|text)\b", svg)) > 20, f"{kind}: SVG has almost nothing drawn"


def test_header_and_contents(report, run) -> None:
    _, html, page = report
    text = " ".join(page.text)
    meta = json.loads((run / "meta.json").read_text())
    for label in ("suite", "git commit", "CPU", "GPU", "libraries", "threads", "seeds", "precision", "date"):
        assert f"<dt>{label}</dt>" in html, label
    assert meta["git_commit"] in text
    assert meta["machine"]["cpu_model"] in text
    assert "numpy " in text and "matplotlib " in text  # library versions
    for section in (
        "Run health",
        "Overview: which estimator, per problem?",
        "Cross-backend agreement",
        "Estimator catalog",
    ):
        assert section in text, section
    assert "normal × quadratic" in text and "bernoulli × bernoulli_toy" in text
    assert "leaderboard by variance" in text and "leaderboard by efficiency" in text
    # gumbel_softmax is biased: badge in its leaderboard row, bias with its CI in the cell
    assert re.search(r"gumbel_softmax \(temperature=0\.5\) <span class=\"badge biased\"", html)
    assert re.search(r'class="biasval">bias [0-9.e-]+ \[[0-9.e-]+, [0-9.e-]+\] z=', html)
    assert '<td class="best">' in html  # best entries highlighted
    # numpy/torch/jax compared: counts, a QQ plot, and only the significant disagreements listed
    assert "pairwise comparisons" in text and "fig-qq" in html
    # catalog with references
    assert "Williams 1992" in text  # score_function's reference


def test_no_external_resources(report) -> None:
    _, html, page = report
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        for k, v in attrs.items():
            if k in URL_ATTRS:
                assert v.startswith(("data:", "#")) or v == "", f"<{tag} {k}={v[:80]!r}>"
            if not v.startswith("data:image/svg+xml,"):  # inline SVGs are checked below, decoded
                assert "url(" not in v.lower() or "url(data:" in v.lower(), f"<{tag} {k}>"
        if tag == "script":
            assert "src" not in attrs
    css = html[html.index("<style>") : html.index("</style>")]
    assert "@import" not in css and "url(" not in css
    for _, src in page.figures():
        data = _decode(src)
        if not data.startswith(b"\x89PNG"):
            hrefs = re.findall(rb'(?:xlink:)?href="([^"]*)"', data) + re.findall(rb"url\(([^)]*)\)", data)
            assert all(h.startswith(b"#") for h in hrefs), hrefs[:3]


def test_hostile_names_are_escaped(report) -> None:
    _, html, page = report
    assert XSS_NAME not in html and XSS_HYPER not in html
    assert "<i>x</i>" not in html and "<b>family</b>" not in html and "<u>doc</u>" not in html
    assert "<a href='https://example.com'>" not in html and "&lt;a href=&#39;https://example.com&#39;&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert sum(1 for t, _ in page.tags if t == "script") == 1  # only the report's own inline script
    assert not any(k.startswith("on") for _, a in page.tags for k in a)  # no event-handler attributes
    text = " ".join(page.text)
    assert XSS_NAME in text and "report-test <b>&x <i>" in text  # shown literally, as text


def test_old_run_without_newer_columns(run, tmp_path) -> None:
    old = tmp_path / "old"
    shutil.copytree(run, old)
    df = pd.read_parquet(old / "results.parquet")
    drop = [
        "variance_se",
        "cell_key",
        "problem",
        "exact_method",
        "unbiased",
        "family",
        "device",
        "dtype",
        "variance_rel_halfwidth",
        "precision_capped",
        *[c for c in df.columns if c.startswith(("h_", "o_"))],
    ]
    df = df.drop(columns=[c for c in drop if c in df.columns])
    for c in ("time_median_s", "time_iqr_s", "time_samples", "efficiency"):
        df[c] = np.nan  # a run with timing off
    df.to_parquet(old / "results.parquet")
    meta = json.loads((old / "meta.json").read_text())
    for k in ("machine", "seeds", "dropped"):
        meta.pop(k, None)
    meta["failed"] = [{"cell": "relax[torch:cpu] x", "error": "ValueError: <b>bad</b> input"}]
    meta["skipped"] = [{"cell": "pathwise[torch:cuda] y", "reason": "CUDA not available"}]
    (old / "meta.json").write_text(json.dumps(meta))
    html = build_report([old], tmp_path / "old.html", lazy_over=0).read_text()
    assert "timing was off" in html and "<dd>off for " in html
    assert "ValueError: &lt;b&gt;bad&lt;/b&gt; input" in html and "CUDA not available" in html  # run health
    page = Page(html)
    assert page.figures(), "variance figures need no timing"
    imgs = [a for t, a in page.tags if t == "img"]  # more figures than lazy_over: lazy loading
    assert imgs and all(a.get("loading") == "lazy" for a in imgs)
    nokey = tmp_path / "nokey"  # a run from before cell keys: compare matches on the identity in words
    shutil.copytree(run, nokey)
    pd.read_parquet(run / "results.parquet").drop(columns=["cell_key"]).to_parquet(nokey / "results.parquet")
    text, _ = compare_runs(run, nokey)
    assert "only in A: 0 cells; only in B: 0 cells" in text and "matched 0 cells" not in text, text


def test_two_runs_in_one_report(run, tmp_path) -> None:
    html = build_report([run, run], tmp_path / "two.html", figures=False).read_text()
    assert "run#2 · numpy:cpu" in html  # duplicate run ids are made unique, platforms carry the run


def test_compare_flags_only_real_changes(run, tmp_path) -> None:
    b = tmp_path / "b"
    shutil.copytree(run, b)
    df = pd.read_parquet(b / "results.parquet")
    target = (df["estimator"] == "score_function") & (df["backend"] == "numpy") & (df["param"] == "loc")
    assert target.sum() >= 2
    for c in ("variance", "variance_se", "variance_ci_low", "variance_ci_high"):
        df.loc[target, c] *= 10.0
    gone = df["cell_key"] == df.loc[df["estimator"] == "pathwise", "cell_key"].iloc[0]
    df = df[~gone]
    df.to_parquet(b / "results.parquet")
    text, path = compare_runs(run, b, tmp_path / "cmp.html")
    res_lines = [ln for ln in text.splitlines() if "↑" in ln and "[" in ln]
    assert res_lines and all("score_function [numpy:cpu]" in ln for ln in res_lines), text
    assert "only in A: 1 cells; only in B: 0 cells" in text
    assert f"variance B/A: {int(target.sum())} higher" in text, text
    assert "0 lower" in text
    html = path.read_text()
    assert "Only in A (1)" in html and "pathwise" in html and "↑↑" in html
    # identical runs: nothing flagged
    text, _ = compare_runs(run, run, None)
    assert "↑" not in text.split("legend:")[0].split("\n", 3)[-1] and "0 higher, 0 lower at 95%" in text


def test_cli_report_and_compare(run, tmp_path, capsys, monkeypatch) -> None:
    import harness.report

    monkeypatch.setattr(harness.report, "build_report", functools.partial(harness.report.build_report, figures=False))
    out = tmp_path / "cli.html"
    assert cli(["report", str(run), "-o", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out and out.stat().st_size > 10_000
    assert cli(["compare", str(run), str(run), "-o", str(tmp_path / "c.html")]) == 0
    assert "matched" in capsys.readouterr().out
    assert cli(["report", str(tmp_path / "nope")]) == 2


def test_large_run_collapses(tmp_path) -> None:
    run = synthetic_run(tmp_path / "big", n_estimators=12, dims=(1, 10, 100), Ls=(1, 4, 16, 64))
    n = pd.read_parquet(run / "results.parquet")["cell_key"].nunique()
    assert n > 2000
    out = build_report([run], tmp_path / "big.html", figures=False)
    page = Page(out.read_text())
    sections = [a for t, a in page.tags if t == "details" and "section" in a.get("class", "")]
    assert len(sections) == 5 and sum("open" in a for a in sections) == 1
    instances = [a for t, a in page.tags if t == "details" and "instance" in a.get("class", "")]
    assert len(instances) == 15 and sum("open" in a for a in instances) == 5  # first of each section
    assert out.stat().st_size < 8 * 2**20, "tables of 2000+ cells should stay a few MiB"


def test_summary_first_screen(report, run) -> None:
    """Health line, one verdict per distribution family and the heat map come before any other section."""
    _, html, page = report
    text = " ".join(page.text)
    top = html[: html.index('id="health"')]
    assert 'id="summary"' in top and '<table class="heat"' in top and 'class="verdict-list"' in top
    meta = json.loads((run / "meta.json").read_text())
    n_cells = meta["cells_done"]
    assert re.search(rf"<b>{n_cells}</b> cells", top), "the health line counts the run's cells"
    dists = set(pd.read_parquet(run / "results.parquet")["distribution"])
    verdicts = re.findall(r'<li><b class="dist">([^<]+)</b>', top)
    assert sorted(verdicts) == sorted(dists)
    # normal: pathwise (or the hostile copy of it) beats plain REINFORCE on the Gaussian quadratic at equal time (the
    # default ranking), best or tied on k of n problems, with the median factor
    # (the hostile copy is the same estimator under another name: timing noise decides which of the two is named)
    assert {"pathwise", str(escape(XSS_NAME))} & set(_verdict_picks(html)["normal"]), _verdict_picks(html)
    assert re.search(
        r'normal</b><span><span class="rank">at equal time</span> <span class="pick">[^<]+</span> '
        r'<span class="kofn">best or tied on \d+ of \d+[^<]*</span> <span class="factor">×[0-9.e+]+ vs score_function',
        top,
    )
    assert "cividis" in text and "Efficiency (variance × time) ÷ best unbiased — at equal time" in text
    assert "Variance ÷ best unbiased — at equal L" in text
    assert "&lt;b&gt;family&lt;/b&gt;" in html, "catalog read from meta.json (the estimator is not registered now)"


def _verdict_picks(html: str) -> dict[str, list[str]]:
    top = html[: html.index('id="health"')]
    out = {}
    for m in re.finditer(r'<li><b class="dist">([^<]+)</b><span>(.*?)</span></li>', top, re.S):
        out[m.group(1)] = re.findall(r'<span class="pick">([^<]+)</span>', m.group(2))
    return out


def test_oracle_and_unreliable_never_recommended(tmp_path) -> None:
    """The oracle baseline and the heavy-tailed estimator have the lowest variances of the synthetic run: they
    are never recommended, never the overview's pick and never highlighted best in a leaderboard."""
    run = synthetic_run(tmp_path / "syn", n_estimators=8, dims=(1,), Ls=(1, 4), n_problems=3)
    html = build_report([run], tmp_path / "syn.html", figures=False).read_text()
    picks = _verdict_picks(html)
    assert set(picks) == {"normal", "gamma"} and all(picks.values()), picks
    for names in picks.values():
        assert "score_function_oracle" not in names and "est06" not in names and "score_function" not in names
    assert "Oracle references (never recommended): score_function_oracle" in html  # shown, as a reference only
    ov = html[html.index('id="overview"') : html.index('id="problems"')]
    assert "score_function_oracle" not in ov and "est06" not in ov
    for m in re.finditer(r"<tr><th>([^<]+?)(?: <span[^>]*>[^<]*</span>)?</th>(.*?)</tr>", html):
        if m.group(1).startswith(("score_function_oracle", "est06")):
            assert 'class="best"' not in m.group(2) and 'class="tie"' not in m.group(2), m.group(1)
    # heat map marks: u (unreliable) for est06, b for the biased est04, the oracle labelled as a reference
    assert "(oracle, reference)" in html
    assert re.search(r"est06 on [^\"]*unreliable", html) and re.search(r"est04 on [^\"]*biased", html)


def test_agreement_lists_only_significant(run, tmp_path) -> None:
    """A torch variance inflated 10x is a significant disagreement; only significant rows are listed."""
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    df = pd.read_parquet(bad / "results.parquet")
    t = (df["estimator"] == "pathwise") & (df["backend"] == "torch") & (df["param"] == "scale") & (df["dim"] == 2)
    assert t.sum() >= 1
    for c in ("variance", "variance_se", "variance_ci_low", "variance_ci_high"):
        df.loc[t, c] *= 10.0
    df.to_parquet(bad / "results.parquet")
    html = build_report([bad], tmp_path / "bad.html", figures=True).read_text()
    sec = html[html.index('id="agreement"') : html.index('id="catalog"')]
    n_sig = int(re.search(r"<strong>(\d+)</strong> significant family-wise", sec).group(1))
    assert n_sig >= int(t.sum())
    assert sec.count("<tr><td>") == n_sig and "fig-qq" in sec
    assert re.search(r'<b class="badn">\d+</b>\s*significant disagreements', html)
