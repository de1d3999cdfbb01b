"""The layout's one-way data flow: the import-linter contracts of pyproject.toml (layers, no cycles, a report and a
results package that never reach the machinery) hold, every module sits in a layer, and the public package is
typed.  The contracts are the checkable form of docs/architecture.md; ``make test`` and ``make lint`` run them too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    return [exe, "--no-cache"]


def test_import_contracts_hold() -> None:
    """lint-imports: the layers of docs/architecture.md, no cycles, the report and results packages' purity."""
    out = subprocess.run(
        _lint_imports(), capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout, out.stdout[-4000:]


def test_every_part_of_the_harness_is_in_a_layer() -> None:
    """A new package under harness/ must be placed in the layers contract (and in docs/architecture.md)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in cfg["contracts"] if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    parts = {f"harness.{p.name}" for p in (ROOT / "harness").iterdir() if (p / "__init__.py").exists()}
    parts |= {f"harness.{p.stem}" for p in (ROOT / "harness").glob("*.py") if p.stem != "__init__"}
    assert parts <= named, f"not in any layer: {sorted(parts - named)}"
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert all(p in doc for p in parts), f"not described in docs/architecture.md: {[p for p in parts if p not in doc]}"


def test_public_package_is_typed() -> None:
    assert (ROOT / "stochgrad" / "py.typed").exists()
    import stochgrad

    assert stochgrad.__all__ and stochgrad.__doc__


def test_results_readme_is_generated_from_the_schema() -> None:
    from harness.results import schema_markdown

    text = (ROOT / "results" / "README.md").read_text()
    begin, end = "<!-- columns:begin -->", "<!-- columns:end -->"
    assert begin in text and end in text, "results/README.md lacks the generated column block"
    block = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert block == schema_markdown().strip(), "regenerate: python -m harness.results (see results/README.md)"


def test_rows_only_use_declared_columns() -> None:
    from harness.measure.cells import Cell
    from harness.measure.runner import run_cell
    from harness.problems import ProblemSpec
    from harness.results import undeclared

    out = run_cell(
        Cell(
            "pathwise",
            "numpy",
            "cpu",
            ProblemSpec("normal", "quadratic", 2),
            2,
            40,
            timing=True,
            options={"timing_max_s": 0.01},
        )
    )
    assert out.status == "ok", out.message
    cols = list(out.rows[0]) + ["run_id"]
    assert not undeclared(cols), undeclared(cols)
