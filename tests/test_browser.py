"""The HTML report in a real browser: headless Debian Chromium driven by Playwright (harness.report.browser).

A small real run (NumPy + PyTorch, with a hostile estimator name) is rendered to a report and opened from
file://: no console or page errors, no alert dialog, no request other than file:/data:, every image decoded
with a non-zero size once all sections are expanded (also with lazily loaded figures), no horizontal overflow at 1280 px, a sensible page
height, the hostile name visible as text and only the report's own script in the DOM.  Skipped, with the
reason, where Chromium or Playwright is missing (CI installs chromium: .ci/run).
"""

from __future__ import annotations

import pytest

from harness.report import build_report
from harness.report.browser import chromium_path, inspect_report
from harness.report.demo import XSS_NAME, small_run

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_report(tmp_path_factory):
    if chromium_path() is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium; .ci/run installs it in CI)")
    pytest.importorskip("playwright.sync_api", reason="playwright (PyPI) is not installed")
    d = tmp_path_factory.mktemp("browser")
    run = small_run(d / "run", backends=("numpy", "torch"), jax=False, R=200)
    html = build_report([run], d / "report.html")
    return html, inspect_report(html, d / "shot.png", width=1280, height=900)


def test_lazy_images_load_when_expanded(browser_report) -> None:
    """Large reports load figures lazily: 'expand all' (and printing) must still bring every image in."""
    html, _ = browser_report
    run = html.parent / "run"
    lazy = build_report([run], html.parent / "lazy.html", lazy_over=0)
    assert 'loading="lazy"' in lazy.read_text()
    collapsed = inspect_report(lazy, expand=False)
    assert collapsed["console_errors"] == [] and collapsed["page_errors"] == []
    expanded = inspect_report(lazy, expand=True)
    assert expanded["images"] and all(w > 50 and h > 50 for w, h, _ in expanded["images"]), expanded["images"][:3]


def test_no_errors_no_network_no_dialogs(browser_report) -> None:
    _, r = browser_report
    assert r["console_errors"] == [] and r["page_errors"] == [], (r["console_errors"], r["page_errors"])
    assert r["dialogs"] == [], "a script from the data ran"
    assert r["requests"] == [], f"external requests: {r['requests'][:5]}"


def test_all_images_decoded(browser_report) -> None:
    _, r = browser_report
    assert len(r["images"]) >= 6
    bad = [x for x in r["images"] if not (x[0] > 50 and x[1] > 50)]
    assert not bad, bad[:3]


def test_layout_sensible(browser_report) -> None:
    html, r = browser_report
    assert r["width"] <= 1280, "page overflows a laptop-width window horizontally"
    assert 1500 < r["height_collapsed"] <= r["height_expanded"] < 40_000, (r["height_collapsed"], r["height_expanded"])
    assert (html.parent / "shot.png").stat().st_size > 20_000


def test_hostile_name_is_text(browser_report) -> None:
    _, r = browser_report
    assert XSS_NAME in r["body_text"]
    assert r["n_scripts"] == 1
