"""Bad suite files and CLI arguments: a clear error naming file, key and valid choices; exit 2; nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main

GOOD_PROBLEM = """
  [[sweep.problems]]
  distribution = "normal"
  params = { loc = 0.5, scale = 1.5 }
  objective = "quadratic"
  dims = [1]
"""


def _suite(
    tmp_path: Path,
    sweep: str = 'estimators = ["pathwise"]\nbackends = ["numpy"]\nn_samples = [2]',
    problem: str = GOOD_PROBLEM,
    head: str = '[suite]\nname = "t"\nreplicates = 50',
    extra: str = "",
) -> Path:
    p = tmp_path / "suite.toml"
    p.write_text(f"{head}\n\n[[sweep]]\n{sweep}\n{problem}\n{extra}")
    return p


CASES = {
    "unknown estimator": (
        dict(sweep='estimators = ["pathwize"]\nn_samples = [2]'),
        ["sweep[0].estimators", "pathwize", "valid:", "pathwise"],
    ),
    "unknown distribution": (
        dict(problem=GOOD_PROBLEM.replace('"normal"', '"gaussian"')),
        ["distribution", "gaussian", "valid:", "normal"],
    ),
    "unknown objective": (
        dict(problem=GOOD_PROBLEM.replace('"quadratic"', '"quartic"')),
        ["objective", "quartic", "valid:", "quadratic"],
    ),
    "unknown key": (
        dict(sweep='estimators = ["pathwise"]\nsamples = [2]'),
        ["sweep[0].samples", "unknown key", "n_samples"],
    ),
    "unknown suite key": (dict(head='[suite]\nname = "t"\nreplicate = 5'), ["suite.replicate", "replicates"]),
    "unknown top-level": (dict(extra="[runs]\nx = 1"), ["runs", "valid"]),
    "wrong type": (dict(sweep='estimators = ["pathwise"]\nn_samples = "four"'), ["n_samples", "positive integer"]),
    "zero L": (dict(sweep='estimators = ["pathwise"]\nn_samples = [0]'), ["n_samples", "positive integer"]),
    "negative L": (dict(sweep='estimators = ["pathwise"]\nn_samples = [-3]'), ["n_samples", "positive integer"]),
    "zero R": (dict(head='[suite]\nname = "t"\nreplicates = 0'), ["suite.replicates", "integer >= 2"]),
    "scale <= 0": (dict(problem=GOOD_PROBLEM.replace("scale = 1.5", "scale = -1.0")), ["params.scale", "> 0"]),
    "probs outside (0,1)": (
        dict(
            problem=GOOD_PROBLEM.replace('"normal"', '"bernoulli"')
            .replace("loc = 0.5, scale = 1.5", "probs = 1.5")
            .replace('"quadratic"', '"bernoulli_toy"')
        ),
        ["params.probs", "(0, 1)"],
    ),
    "unknown parameter": (
        dict(problem=GOOD_PROBLEM.replace("loc = 0.5", "mean = 0.5")),
        ["params.mean", "valid", "loc"],
    ),
    "objective not for distribution": (
        dict(problem=GOOD_PROBLEM.replace('"quadratic"', '"bernoulli_toy"')),
        ["objective", "does not apply"],
    ),
    "bad device": (dict(sweep='estimators = ["pathwise"]\ndevices = ["tpu"]'), ["devices", "tpu", "valid", "cuda"]),
    "bad backend": (
        dict(sweep='estimators = ["pathwise"]\nbackends = ["tensorflow"]'),
        ["backends", "tensorflow", "valid", "numpy"],
    ),
    "bad dim": (dict(problem=GOOD_PROBLEM.replace("dims = [1]", "dims = [0]")), ["dims", "positive integer"]),
    "bad hyper name": (
        dict(sweep='estimators = ["pathwise"]\nhyper = { temprature = [0.1] }'),
        ["hyper.temprature", "unknown key"],
    ),
    "invalid toml": (dict(extra="[[sweep]\n"), ["toml", "not valid TOML"]),
    "bad dtype": (dict(head='[suite]\nname = "t"\ndtype = "float16"'), ["dtype", "float16", "float64"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_suite(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kwargs, needles = CASES[case]
    suite = _suite(tmp_path, **kwargs)
    out = tmp_path / "run"
    rc = main(["run", str(suite), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(suite) in err
    for n in needles:
        assert n in err, f"{case}: {n!r} not in {err!r}"
    assert "Traceback" not in err
    assert not out.exists(), "nothing may be written on bad input"


def test_missing_suite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "no such suite file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--replicates", "0"], "positive integer"),
        (["--replicates", "-5"], "positive integer"),
        (["--seed", "abc"], "non-negative integer"),
        (["--backend", "tensorflow"], "valid"),
        (["--device", "tpu"], "valid"),
        (["--precision", "-1"], "number >= 0"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_bad_cli_arguments(args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = _suite(tmp_path)
    try:
        rc = main(["run", str(suite), *args])
    except SystemExit as exc:  # argparse type errors
        rc = exc.code
    cap = capsys.readouterr()
    assert rc == 2
    assert needle in cap.err
    assert not (tmp_path / "results").exists()


def test_check_unknown_estimator(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "nonexistent"]) == 2
    assert "valid" in capsys.readouterr().err


def test_show_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path)]) == 2
    assert "not a stochgrad run directory" in capsys.readouterr().err
