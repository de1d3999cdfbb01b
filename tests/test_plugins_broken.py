"""Plugins that fail at import or registration, end to end through the ``stochgrad.estimators`` entry-point group.

One fake site directory holds four plugins (a dist-info with entry_points.txt each, put on PYTHONPATH as in
tests/test_plugin.py): one calls ``sys.exit(3)`` on import, one registers an implementation for an unknown
backend, one registers an estimator and then raises, and one good plugin.  Real subprocesses of
``stochgrad list``, ``stochgrad run`` and ``stochgrad report`` must report each failure (list, meta.json's
``failed_plugins``, the report's health section), roll back what a failed plugin registered, and keep
everything else working: the good plugin's estimator is listed and measured, and the run exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
STOCHGRAD = str(Path(sys.executable).parent / "stochgrad")

GOOD = """
import stochgrad as sg

est = sg.register_estimator("good_plugin_pathwise", distributions=["normal"], unbiased=True,
                            requires=["differentiable"], reference="test plugin")


@est.implementation("numpy")
def good_numpy(ctx):
    eps = ctx.noise.normal((ctx.R, ctx.L, ctx.dim))
    gz = ctx.f_grad(ctx.params["loc"] + ctx.params["scale"] * eps)
    return {"loc": gz.mean(1), "scale": (gz * eps).mean(1)}
"""
EXIT = "import sys\nsys.exit(3)\n"
UNKNOWN_BACKEND = """
import stochgrad as sg

est = sg.register_estimator("fortran_only_est", distributions=["normal"], unbiased=True, reference="test")


@est.implementation("numpy")
def ok(ctx):
    return {}


@est.implementation("fortran")
def bad(ctx):
    return {}
"""
RAISES = """
import stochgrad as sg

est = sg.register_estimator("raising_plugin_est", distributions=["normal"], unbiased=True, reference="test")


@est.implementation("numpy")
def ok(ctx):
    return {}


raise RuntimeError("plugin boom at import")
"""
PLUGINS = {  # entry-point name: (module, source)
    "good": ("good_plugin_mod", GOOD),
    "exits": ("exit_plugin_mod", EXIT),
    "unknown_backend": ("fortran_plugin_mod", UNKNOWN_BACKEND),
    "raises": ("raising_plugin_mod", RAISES),
}
BROKEN = ("exits", "unknown_backend", "raises")
SUITE = """
[suite]
name = "plugins"
seed = 1
replicates = 200

[[sweep]]
estimators = ["pathwise", "good_plugin_pathwise"]
backends = ["numpy"]
n_samples = [2]

  [[sweep.problems]]
  distribution = "normal"
  params = { loc = 0.5, scale = 1.5 }
  objective = "quadratic"
  dims = [2]
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("site")
    for ep, (mod, src) in PLUGINS.items():
        dist = site / f"{mod}-0.1.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {mod.replace('_', '-')}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[stochgrad.estimators]\n{ep} = {mod}\n")
        (site / f"{mod}.py").write_text(src)
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), out.get("PYTHONPATH", "")])
    return out


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([STOCHGRAD, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_list_reports_each_broken_plugin_and_keeps_the_rest(env: dict[str, str]) -> None:
    r = _run(["list"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    failed = r.stdout.split("FAILED PLUGINS", 1)[1]
    assert "exits (exit_plugin_mod): SystemExit(3)" in failed
    assert "unknown_backend (fortran_plugin_mod)" in failed and "fortran" in failed
    assert "raises (raising_plugin_mod)" in failed and "plugin boom at import" in failed
    assert "good" not in failed.replace("good_plugin", "")  # the good plugin is not reported
    r = _run(["list", "--json"], env)
    names = {e["name"] for e in json.loads(r.stdout)["estimators"]}
    assert {"good_plugin_pathwise", "pathwise", "score_function"} <= names
    # what a failed plugin registered before failing is rolled back
    assert not names & {"fortran_only_est", "raising_plugin_est"}


def test_run_and_report_record_failed_plugins(env: dict[str, str], tmp_path: Path) -> None:
    suite = tmp_path / "plugins.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    r = _run(["run", str(suite), "--out", str(out), "--no-timing"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    meta = json.loads((out / "meta.json").read_text())
    fp = meta["failed_plugins"]
    for ep in BROKEN:
        assert any(k.startswith(f"{ep} (") for k in fp), (ep, fp)
    assert not any(k.startswith("good (") for k in fp)
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["estimator"]) == {"pathwise", "good_plugin_pathwise"}
    assert df["variance"].notna().all()
    html = tmp_path / "report.html"
    r = _run(["report", str(out), "-o", str(html)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    text = html.read_text()
    for ep, (mod, _) in PLUGINS.items():
        assert (f"{ep} ({mod})" in text) == (ep in BROKEN), ep
