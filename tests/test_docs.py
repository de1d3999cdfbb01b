"""The documentation cannot rot: the site builds with warnings as errors, README.md's relative links resolve and
its notebook example runs, the pages name files and modules that exist, and the catalogs list every built-in."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers", "mkdocs_jupyter")

# [text](target) and ![alt](target), with an optional "title"; the target stops at whitespace or ')'.
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target  (reference definitions)
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(markdown: str) -> list[str]:
    """Link targets in `markdown` that are relative paths (no URL scheme, not a bare #anchor), anchors cut."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    targets = _INLINE_LINK.findall(text) + _REF_DEF.findall(text)
    out = []
    for t in targets:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t) or t.startswith(("#", "/")):
            continue
        out.append(t.split("#", 1)[0])
    return out


def broken_links(markdown: str, base: Path) -> list[str]:
    """Relative link targets of `markdown` that do not exist under `base`."""
    return [t for t in relative_links(markdown) if not (base / t).exists()]


def test_link_checker_sees_broken_and_ignores_urls_and_code(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("x")
    md = (
        "[ok](docs/a.md#part) ![img](docs/missing.png) [web](https://example.org/x.md) [top](#intro)\n"
        "`[code](nowhere.md)`\n```\n[fenced](nowhere2.md)\n```\n[ref]: docs/gone.md\n"
    )
    assert relative_links(md) == ["docs/a.md", "docs/missing.png", "docs/gone.md"]
    assert broken_links(md, tmp_path) == ["docs/missing.png", "docs/gone.md"]


def test_readme_relative_links_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = relative_links(readme)
    assert any(t.startswith("docs/") for t in links), "README.md should link into the docs"
    assert broken_links(readme, ROOT) == [], "README.md links to files that do not exist"


# Repository paths and `python -m` modules named in code spans of the docs pages (the design notes under
# docs/notes/ are dated records and are not checked).
_REPO_PATH = re.compile(r"`((?:stochgrad|harness|estimators|suites|tests|results|docs)/[\w./-]*\w/?)`")
_RUN_MODULE = re.compile(r"python -m ((?:stochgrad|harness|estimators|suites|tests)(?:\.\w+)+)")


def stale_references(markdown: str, root: Path) -> list[str]:
    """Paths and `python -m` modules that `markdown` names but that do not exist under `root`."""
    paths = [p for p in _REPO_PATH.findall(markdown) if "<" not in p and "*" not in p]
    missing = [p for p in paths if not (root / p).exists()]
    for mod in _RUN_MODULE.findall(markdown):
        base = root / mod.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__main__.py").exists()):
            missing.append(f"python -m {mod}")
    return missing


def test_stale_reference_checker_sees_missing(tmp_path: Path) -> None:
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "perf.py").write_text("")
    md = "`harness/perf.py` `harness/gone.py` run `python -m harness.perf`, `python -m harness.old`"
    assert stale_references(md, tmp_path) == ["harness/gone.py", "python -m harness.old"]


@pytest.mark.parametrize(
    "page",
    ["README.md"]
    + sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md") if "notes" not in p.parts),
)
def test_docs_name_existing_files_and_modules(page: str) -> None:
    assert stale_references((ROOT / page).read_text(encoding="utf-8"), ROOT) == []


def test_catalog_lists_every_builtin_estimator() -> None:
    import stochgrad as sg
    from harness import registry

    catalog = (ROOT / "docs" / "catalog" / "index.md").read_text(encoding="utf-8")
    builtin = [n for n in sg.list_estimators() if registry.get_declaration(n).source.startswith("estimators.")]
    assert builtin, "no built-in estimators registered"
    missing = [n for n in builtin if f"| `{n}` |" not in catalog]
    assert missing == [], f"docs/catalog/index.md has no catalog row for {missing}"


def test_workloads_page_lists_every_shipped_workload() -> None:
    from harness.workloads import workload_names

    page = (ROOT / "docs" / "workloads.md").read_text(encoding="utf-8")
    shipped = [n for n in workload_names() if n != "tiny_bernoulli"]  # the bring-your-own example
    assert shipped and [n for n in shipped if f"`{n}`" not in page] == []


def test_readme_notebook_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## In a notebook", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "results/my-run" in code
    code = code.replace("results/my-run", (tmp_path / "my-run").as_posix())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "my-run" / "report.html").exists()
    assert "'loc': array([1.])" in r.stdout and "'scale': array([3.])" in r.stdout


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= 250, f"README.md has {n} lines; the rest belongs in docs/"


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in DOCS_PACKAGES),
    reason="mkdocs-material, mkdocstrings[python] or mkdocs-jupyter not installed (pip install -e '.[docs]')",
)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}\n{r.stderr}"
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "tutorial" / "index.html").exists()
