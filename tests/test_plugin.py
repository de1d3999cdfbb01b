"""The README's plugin example installs, registers through the entry point and passes `stochgrad check`;
a plugin that fails to import is reported (list and run metadata) and does not stop anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "plugin_example"
BIN = Path(sys.executable).parent


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        cwd=ROOT,
    )
    return site


def test_readme_shows_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (EXAMPLE / "stochgrad_antithetic.py").read_text().strip() in readme
    assert '[project.entry-points."stochgrad.estimators"]' in readme


def test_plugin_passes_check(plugin_site: Path) -> None:
    r = subprocess.run(
        [str(BIN / "stochgrad"), "check", "antithetic_pathwise", "--replicates", "4000"],
        capture_output=True,
        text=True,
        env=_env(plugin_site),
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdict: PASS" in r.stdout
    for b in ("numpy", "torch", "jax"):
        assert f"antithetic_pathwise [{b}]" in r.stdout


def test_plugin_appears_in_list(plugin_site: Path) -> None:
    r = subprocess.run(
        [str(BIN / "stochgrad"), "list", "--json"],
        capture_output=True,
        text=True,
        env=_env(plugin_site),
        cwd=ROOT,
        timeout=300,
    )
    data = json.loads(r.stdout)
    names = {e["name"] for e in data["estimators"]}
    assert "antithetic_pathwise" in names


def test_broken_plugin_is_reported_not_fatal(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[stochgrad.estimators]\nbroken = broken_plugin_mod\n")
    (site / "broken_plugin_mod.py").write_text("import numpy_does_not_exist\n")
    env = _env(site)
    r = subprocess.run([str(BIN / "stochgrad"), "list"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0
    assert "broken (broken_plugin_mod)" in r.stdout and "numpy_does_not_exist" in r.stdout
    out = tmp_path / "run"
    r = subprocess.run(
        [
            str(BIN / "stochgrad"),
            "run",
            "suites/smoke.toml",
            "--out",
            str(out),
            "--replicates",
            "100",
            "--backend",
            "numpy",
            "--no-timing",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert any("broken" in k for k in meta["failed_plugins"])
