"""Declarations are the truth: a plugin declaring ``oracle=True`` under an ordinary name is never recommended.

The plugin ``shrunk_pathwise`` is pathwise shrunk 10× towards the exact gradient (unbiased, 1/100 of pathwise's
variance: it uses the exact answer, which is what makes it an oracle).  Run end to end (suite run → rows → HTML
report), it is labelled a reference and never picked: not in a verdict, not best or tied in a leaderboard.  The
same estimator declared ``oracle=False`` is the verdict's pick (the test can fail: names decide nothing).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import stochgrad as sg
from harness import registry
from harness.report import build_report

NAME = "shrunk_pathwise"  # an ordinary name: nothing in it says "oracle"
SUITE = {
    "suite": {"name": "oracle-declared", "seed": 0, "replicates": 20000, "timing_max_s": 0.01},
    "sweep": [
        {
            "estimators": ["pathwise", "score_function", NAME],
            "backends": ["numpy"],
            "n_samples": [1, 4],
            "problems": [
                {"distribution": "normal", "params": {"loc": 0.5, "scale": 1.5}, "objective": "quadratic", "dims": [1]}
            ],
        }
    ],
}


def _register(oracle: bool) -> None:
    pathwise = registry.get_estimator("pathwise", "numpy").fn

    def shrunk(ctx: Any) -> dict:
        """Pathwise pulled 10× towards the exact gradient (needs the exact answer)."""
        G = pathwise(ctx)
        exact = ctx.problem.exact.grads
        return {k: exact[k][None] + 0.1 * (G[k] - exact[k][None]) for k in G}

    sg.register_estimator(
        NAME, distributions=("normal",), unbiased=True, oracle=oracle, family="test", reference="test"
    ).implementation("numpy")(shrunk)


def _verdict_picks(html: str) -> dict[str, list[str]]:
    top = html[: html.index('id="health"')]
    out = {}
    for m in re.finditer(r'<li><b class="dist">([^<]+)</b><span>(.*?)</span></li>', top, re.S):
        out[m.group(1)] = re.findall(r'<span class="pick">([^<]+)</span>', m.group(2))
    return out


def _run_and_report(tmp_path: Path, oracle: bool) -> tuple[Any, str]:
    _register(oracle)
    try:
        run = sg.run(SUITE, out=tmp_path / f"run-{oracle}")
    finally:
        registry.unregister(NAME)
    html = build_report([run.dir], tmp_path / f"report-{oracle}.html", figures=False).read_text()
    return run, html


def test_declared_oracle_under_an_ordinary_name_is_never_recommended(tmp_path: Path) -> None:
    run, html = _run_and_report(tmp_path, oracle=True)
    df = run.results
    assert set(df.loc[df.estimator == NAME, "oracle"]) == {True}
    assert set(df.loc[df.estimator != NAME, "oracle"]) == {False}
    var = df.groupby(["n_samples", "estimator"])["variance"].max().unstack()
    assert (var[NAME] < 0.05 * var["pathwise"]).all(), var  # the lowest variance by far: what a pick would name
    picks = _verdict_picks(html)
    assert picks.get("normal"), picks
    assert NAME not in " ".join(picks["normal"]), picks
    assert f"{NAME} <span" in html and "(oracle, reference)" in html  # shown, labelled as a reference
    rows = [m for m in re.finditer(r"<tr><th>([^<]+?)(?: <span[^>]*>[^<]*</span>)?</th>(.*?)</tr>", html)]
    ours = [m for m in rows if m.group(1).startswith(NAME)]
    assert ours, "no leaderboard row for the oracle"
    for m in ours:
        assert 'class="best"' not in m.group(2) and 'class="tie"' not in m.group(2), m.group(0)[:300]
    assert any('class="best"' in m.group(2) for m in rows if m.group(1).startswith("pathwise"))


def test_the_same_estimator_declared_ordinary_is_recommended(tmp_path: Path) -> None:
    """Power: without the declaration the lowest-variance estimator is the verdict's pick."""
    _, html = _run_and_report(tmp_path, oracle=False)
    assert NAME in " ".join(_verdict_picks(html).get("normal", [])), _verdict_picks(html)


@pytest.fixture(autouse=True)
def _clean() -> Any:
    yield
    registry.unregister(NAME)
