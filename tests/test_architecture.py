"""The layout's one-way data flow: the results contract, the store and the report never import the runner, the
registry or the suite expander (checked in a fresh interpreter), and the public package is typed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPWARD = (
    "harness.measure.runner",
    "harness.registry",
    "harness.suite.expand",
    "harness.runs.suite_run",
    "harness.measure.timing",
)


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", ["harness.results", "harness.runs.store", "harness.stats.metrics", "harness.report"])
def test_leaf_modules_do_not_import_upward(module: str) -> None:
    loaded = _modules_after_import(module)
    assert not loaded & set(UPWARD), f"{module} imports {sorted(loaded & set(UPWARD))}"
    assert "harness.problems" not in loaded or module == "harness.report", f"{module} loads the distributions"


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
