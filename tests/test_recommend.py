"""``stochgrad recommend`` / ``sg.recommend``: targets, arms from declarations, the run directory, the report page,
bad input (exit 2, nothing written), suite files, biased arms, resume and lock refusal, and the pick's validity.

The racing statistics are tested in tests/test_race.py; here the wiring: a problem whose best estimator is clear
by more than 14x in variance (pathwise vs score function on a Gaussian quadratic: exact variances in
tests/support/exact_variances.py) must be picked, through the one runner, with real per-call times.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest

import stochgrad as sg
from harness.cli.main import main
from harness.registry import get_declaration
from harness.runs import recommend_run as rr
from harness.runs.store import RunStore
from harness.stats.race import RoundRecord
from suites.benchmarks.recommend_validation import run_config, summarize_battery
from tests.support.exact_variances import gaussian_quadratic_variances

GAUSS = "normal(loc=5,scale=1)/quadratic/D=2"
CLEAR = ["pathwise", "score_function", "score_function_rloo"]
BUDGET = "6"


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_picks_the_clear_winner_writes_a_run_and_the_report_renders_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exact = gaussian_quadratic_variances(5.0, 1.0, 0.0, 2)
    assert min(exact["score_function"], exact["score_function_rloo"]) > 14 * exact["pathwise"]  # clear at any cost
    out = tmp_path / "run"
    rc, text, err = _cli(
        ["recommend", GAUSS, "--estimators", ",".join(CLEAR), "--budget", BUDGET, "--json", "--out", str(out)], capsys
    )
    assert rc == 0, err
    data = json.loads(text)
    assert data["run_dir"] == str(out)
    (a,) = data["answers"]
    assert a["race"]["pick"] == "pathwise", a["text"]
    assert {"key", "target", "label", "rank_by", "budget_s", "first_calls_s", "seconds", "race", "text"} <= set(a)
    r = a["race"]
    assert {"pick", "runner_up", "factors", "ties", "eliminated", "rounds", "arms", "excluded", "decided"} <= set(r)
    assert set(r["factors"]) == {"time", "evals"}
    assert r["runner_up"] in CLEAR and r["runner_up"] != "pathwise"
    f = r["factors"]["time"]
    # a runner-up flagged heavy-tailed (score-function estimates often are here) has a lower limit only (JSON null)
    assert f["factor"] > 1 and f["low"] <= f["factor"] <= (math.inf if f["high"] is None else f["high"])
    for name, rnd in r["eliminated"].items():
        assert r["arms"][name]["round_out"] == rnd and r["arms"][name]["status"] == "eliminated"
    assert "round 1: leader" in err  # the progress display: the live leader and the estimators in the race
    assert "in the race" in err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "recommend" and meta["status"] == "complete" and meta["answers_done"] == 1
    assert meta["picks"] == {a["label"]: "pathwise"}
    assert (out / "answers" / f"{a['key']}.json").is_file()
    for p in ("meta.json", "recommend.json", "results.parquet"):
        assert (out / p).stat().st_mode & 0o777 == 0o644
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["arm"]) == set(CLEAR) and df.loc[df["pick"], "arm"].tolist() == ["pathwise"]
    run = sg.load_run(out)
    assert "answers 1/1" in run.header()
    html_path = tmp_path / "rec.html"
    rc, text, err = _cli(["report", str(out), "-o", str(html_path)], capsys)
    assert rc == 0, err
    html = html_path.read_text()
    assert "Recommendations" in html and "pathwise" in html and a["label"] in html


def test_api_on_a_problem_object(tmp_path: Path) -> None:
    p = sg.problem("normal", loc=5.0, scale=1.0, objective="quadratic", dim=2)
    rec = sg.recommend(p, budget_s=float(BUDGET), estimators=CLEAR, out=tmp_path / "r", stream=io.StringIO())
    assert rec.pick == "pathwise"
    assert rec.picks == {rec.answers[0]["label"]: "pathwise"}
    assert "pick: pathwise" in rec.text()
    assert json.loads(rec.to_json())["answers"][0]["race"]["pick"] == "pathwise"


@pytest.mark.parametrize(
    ("raised", "reason"),
    [(KeyboardInterrupt(), "KeyboardInterrupt (no Ctrl-C was pressed)"), (SystemExit(0), "SystemExit(0)")],
)
def test_an_estimator_that_exits_is_excluded_or_dropped_not_the_end(raised: BaseException, reason: str) -> None:
    """An estimator that ends its own call with SystemExit or KeyboardInterrupt (no Ctrl-C) used to end the whole
    answer; now, as any failing estimator, it is excluded when its first call does (``exits_first``) and dropped
    from the race with why when a later draw does (``exits_later``), and the race picks among the others."""
    from harness import registry

    calls = {"n": 0}
    first = sg.register_estimator("exits_first", distributions=["normal"], unbiased=True)
    later = sg.register_estimator("exits_later", distributions=["normal"], unbiased=True)

    @first.implementation("numpy")
    def exits_first(ctx):  # noqa: ANN001, ANN202
        raise raised

    @later.implementation("numpy")
    def exits_later(ctx):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] > 1:
            raise raised
        return {k: ctx.B.xp.zeros((ctx.R, *v.shape)) + 1.0 for k, v in ctx.params.items()}

    try:
        p = sg.problem("normal", loc=5.0, scale=1.0, objective="quadratic", dim=2)
        est = ["pathwise", "exits_first", "exits_later"]
        rec = sg.recommend(p, budget_s=float(BUDGET), estimators=est, stream=io.StringIO())
        race = rec.answers[0]["race"]
        assert rec.pick == "pathwise", rec.text()
        assert race["excluded"]["exits_first"].endswith(f"the estimator raised {reason}"), race["excluded"]
        arm = race["arms"]["exits_later"]
        assert arm["status"] == "dropped" and arm["reason"].endswith(f"the estimator raised {reason}"), arm
    finally:
        registry.unregister("exits_first")
        registry.unregister("exits_later")


def test_problem_syntax_reads_labels() -> None:
    spec = rr.parse_problem("normal(loc=0.5,scale=1.5)/cos(omega=2.0)/D=3")
    assert (spec.distribution, spec.objective, spec.dim) == ("normal", "cos", 3)
    assert dict(spec.params) == {"loc": 0.5, "scale": 1.5} and dict(spec.objective_params) == {"omega": 2.0}
    assert rr.parse_problem("normal:loc=0.5,scale=1.5/cos(omega=2.0)/D=3") == spec
    plain = rr.parse_problem("normal(loc=0.5,scale=1.5)/quadratic")
    assert rr.parse_problem(plain.label()) == plain and plain.dim == 1  # a problem's label reads back
    assert rr.parse_problem("categorical(logits=[0.5,-0.5,0])/categorical_target").params["logits"] == [0.5, -0.5, 0]


def test_arms_come_from_declarations() -> None:
    t = rr.RecommendTarget(rr.parse_problem("bernoulli(probs=0.3)/bernoulli_toy/D=2"), 2)
    points, excluded = rr.arm_points(t)
    by = {p.label: p for p in points}
    assert "does not apply to bernoulli" in excluded["pathwise"]
    assert by["straight_through"].unbiased is False and by["score_function"].unbiased is True
    assert by["score_function_oracle"].oracle is True
    grid, _ = rr.arm_points(t, ["relax"], grid=True)
    labels = [p.label for p in grid]
    assert labels[0] == "relax" and "relax[temperature=0.05]" in labels and "relax[fit_temperature=False]" in labels
    assert all(
        get_declaration("relax").hyperparameters[k].validate(v) is None for p in grid for k, v in p.hyper.items()
    )


def test_biased_arms_race_apart_are_reported_with_bias_and_never_picked(tmp_path: Path) -> None:
    rec = sg.recommend(
        "bernoulli(probs=0.3)/bernoulli_toy/D=2",
        budget_s=float(BUDGET),
        estimators=["score_function", "straight_through"],
        out=tmp_path / "r",
        stream=io.StringIO(),
    )
    r = rec.answers[0]["race"]
    st = r["arms"]["straight_through"]
    assert r["pick"] == "score_function"
    assert st["unbiased"] is False and st["status"] != "pick"
    assert st["bias_against"] == "truth" and st["bias"] > 0.01  # straight-through's bias on the toy is large
    assert st["bias_detected"] is True
    assert "biased (never the pick): straight_through" in rec.answers[0]["text"]


def test_suite_file_gives_one_answer_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(
        '[suite]\nname = "tiny"\n[[sweep]]\nestimators = ["score_function"]\nbackends = ["numpy"]\nn_samples = [2]\n'
        '  [[sweep.problems]]\n  distribution = "normal"\n  params = { loc = 0.5, scale = 1.5 }\n'
        '  objective = "quadratic"\n  dims = [1]\n'
        '  [[sweep.problems]]\n  distribution = "bernoulli"\n  params = { probs = 0.3 }\n'
        '  objective = "bernoulli_toy"\n  dims = [1]\n'
    )
    rc, text, err = _cli(
        ["recommend", str(suite), "--estimators", "pathwise,score_function,score_function_rloo,arm", "--budget", "4"]
        + ["--json", "--out", str(tmp_path / "r")],
        capsys,
    )
    assert rc == 0, err
    answers = json.loads(text)["answers"]
    assert [a["target"]["target"]["distribution"] for a in answers] == ["normal", "bernoulli"]
    assert answers[0]["race"]["pick"] == "pathwise"
    assert answers[1]["race"]["pick"] in {"score_function", "score_function_rloo", "arm"}
    assert "pathwise" in answers[1]["not_applicable"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["recommend", GAUSS, "--estimators", "nope"], ["--estimators", "unknown estimator 'nope'", "valid"]),
        (["recommend", "nonsense"], ["not a problem", "DIST(p=v"]),
        (["recommend", "gauss(loc=1)/quadratic"], ["gauss", "normal"]),
        (["recommend", "normal(loc=0.5,scale=1.5)/quadratik"], ["quadratik", "quadratic"]),
        (["recommend", "missing.toml"], ["missing.toml"]),
        (["recommend", "--workload", "no_such_model"], ["unknown workload", "vae_bernoulli"]),
        (["recommend", "--workload", "vae_bernoulli", "--config", "latent_dims=3"], ["latent_dims", "valid"]),
        (["recommend", GAUSS, "--budget", "0"], ["--budget"]),
        (["recommend", GAUSS, "--budget", "-3"], ["--budget"]),
        (["recommend", GAUSS, "--rank-by", "samples"], ["--rank-by", "evals"]),
        (["recommend"], ["TARGET", "--workload"]),
        (["recommend", GAUSS, "--checkpoint", "5"], ["--workload"]),
        (["recommend", GAUSS, "--out", ""], ["--out", "empty"]),
        (["recommend", GAUSS, "--backend", "fortran"], ["fortran"]),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    argv: list[str],
    words: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ei:  # argparse's own refusals exit 2 as well
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    assert ei.value.code == 2, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "results").exists()


def test_rank_by_evals_without_counts_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rr, "counts_available", lambda: False)
    out = tmp_path / "r"
    rc, _, err = _cli(["recommend", GAUSS, "--rank-by", "evals", "--out", str(out)], capsys)
    assert rc == 2 and "--rank-by evals" in err and "f_evals" in err and "--rank-by time" in err
    assert not out.exists()


@pytest.mark.skipif(not rr.counts_available(), reason="the runner does not count evaluations yet (issue 19 A)")
def test_rank_by_evals_with_counts(tmp_path: Path) -> None:
    rec = sg.recommend(GAUSS, budget_s=float(BUDGET), rank_by="evals", estimators=CLEAR, out=tmp_path / "r")
    a = rec.answers[0]
    assert a["rank_by"] == "evals" and a["race"]["pick"] == "pathwise"
    for name in CLEAR:
        cost = a["race"]["arms"][name]["cost"]
        assert cost["f_evals"] + cost["grad_evals"] > 0


def test_resume_and_lock_are_refused_through_the_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    base = ["recommend", GAUSS, "--estimators", ",".join(CLEAR), "--budget", BUDGET, "--out", str(out)]
    assert _cli(base, capsys)[0] == 0
    rc, _, err = _cli(base, capsys)  # a second run into the same directory without --resume
    assert rc == 2 and "already holds a run" in err
    rc, _, err = _cli([*base, "--resume", "--budget", "7"], capsys)  # different options
    assert rc == 2 and "budget_s" in err
    rc, _, err = (
        _cli([*base, "--resume", "--rank-by", "evals"], capsys) if rr.counts_available() else (2, "", "rank_by")
    )
    assert rc == 2 and "rank_by" in err
    rc, text, err = _cli([*base, "--resume"], capsys)  # same options: the answer is there, nothing runs again
    assert rc == 0 and "answered already" in err and "pick: pathwise" in text
    train = tmp_path / "t"
    train.mkdir()
    (train / "meta.json").write_text(json.dumps({"kind": "training", "status": "complete"}))
    rc, _, err = _cli([*base[:-1], str(train), "--resume"], capsys)
    assert rc == 2 and "training run" in err
    store = RunStore(out, records="answers")
    store.acquire_lock()
    try:
        rc, _, err = _cli([*base, "--resume"], capsys)
        assert rc == 2 and "lock" in err
    finally:
        store.release_lock()


def test_validation_known_variances_fast() -> None:
    """The 20-seed validation (suites/benchmarks/recommend_validation.py) on 4 seeds of two configurations whose
    best exact θ beats the next by >= 25% in (nearly) every run: the best is picked in every such run, no run has an
    error, the budget holds.  Seeds 0-3 (printed on failure with the per-configuration counts)."""
    outcomes = {name: run_config(name, 4, 10.0) for name in ("gauss-time", "bern-noDis-time")}
    ok, lines = summarize_battery(outcomes)
    assert ok, "seeds 0-3: " + "; ".join(lines)
    assert all(o["gap"] >= 1.25 for o in outcomes["gauss-time"]), lines  # power: the criterion applies


def test_runner_sampler_is_timed_once_then_retimed_pooled() -> None:
    """An arm's per-call time is taken once, quickly, at its first draw (later draws reuse it); ``retime`` pools more
    samples with the earlier ones (the race calls it when per-call times limit its decision)."""
    t = rr.RecommendTarget(rr.parse_problem(GAUSS), 2)
    (p,) = [p for p in rr.arm_points(t, ["pathwise"])[0]]
    s = rr.RunnerSampler(t.target.build(), t, p, seed=1)
    c1 = s.draw(4).cost
    assert s.draw(8).cost is c1 and c1.seconds > 0 and c1.seconds_samples >= 1 and c1.timing_s > 0
    c2 = s.retime(0.01)
    assert c2.seconds_samples > c1.seconds_samples and c2.timing_s > c1.timing_s
    assert s.draw(4).cost is c2 and c2.f_evals == c1.f_evals


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _rounds() -> list[RoundRecord]:
    common = dict(alpha=0.01, z=3.0, replicates={}, wall_s=0.1, budget_s=10.0)
    return [
        RoundRecord(1, leader="a", survivors=["a", "b", "c"], eliminated=[], spent_s=1.0, **common),  # type: ignore[arg-type]
        RoundRecord(2, leader="a", survivors=["a", "b"], eliminated=[("c", "a")], spent_s=2.5, **common),  # type: ignore[arg-type]
        RoundRecord(3, leader="b", survivors=["a", "b"], eliminated=[], spent_s=5.0, retimed=["a", "b"], **common),  # type: ignore[arg-type]
    ]


def test_progress_is_one_live_line_on_a_tty_and_one_line_per_round_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress display shows the live leader and the estimators still in the race: on a TTY one line rewritten
    in place (round, leader, survivors, budget spent as a bar) and cut to the terminal's width, eliminations kept above
    it; elsewhere (a file, a pipe) one line per round."""
    monkeypatch.setenv("COLUMNS", "40")  # shutil.get_terminal_size reads it first
    narrow = _Tty()
    p = rr.RaceProgress(narrow, "T", 10.0)
    for r in _rounds():
        p(r)
    p.close()
    assert all(len(seg) <= 39 for line in narrow.getvalue().split("\n")[1:] for seg in line.split("\r\x1b[K"))
    monkeypatch.setenv("COLUMNS", "200")
    tty = _Tty()
    p = rr.RaceProgress(tty, "T", 10.0)
    for r in _rounds():
        p(r)
    p.close()
    text = tty.getvalue()
    lines = text.split("\n")
    assert lines[-1] == "" and text.count("\n") == 2  # the note of round 2's elimination, then the live line ended
    assert "[T] round 2: out: c" in lines[0]
    live = lines[1].split("\r\x1b[K")[-1]  # what the terminal shows last
    assert "round 3 (re-timed: a, b)" in live and "leader b" in live and "in the race (2): a, b" in live
    assert live.startswith("[" + "#" * 6 + " " * 6 + "] 5.0 of 10 s")
    plain = io.StringIO()
    p = rr.RaceProgress(plain, "T", 10.0)
    for r in _rounds():
        p(r)
    p.close()
    out = plain.getvalue().splitlines()
    assert len(out) == 3 and "\r" not in plain.getvalue()
    assert out[1] == "[T] round 2: leader a; in the race (2): a, b; out: c; 2.5 of 10 s"
    assert out[2].startswith("[T] round 3 (re-timed: a, b): leader b")
