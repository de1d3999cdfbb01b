"""The HTML report and the asv dashboard in a real browser: headless Debian Chromium driven by Playwright.

A small real run (NumPy + PyTorch, with a hostile estimator name) is rendered to a report and opened from
file://: no console or page errors, no alert dialog, no request other than file:/data:, every image decoded,
no horizontal overflow; the summary (verdicts and heat map) fits the first 1400×900 viewport; typing into a
table filter changes the number of visible rows, clicking a header sorts, "show all" shows every row;
sections open from the keyboard.  A synthetic 10,000-cell run (slow) stays under 10 MB and renders without
errors.  The published asv dashboard (assets bundled) loads with no request leaving 127.0.0.1.  Skipped, with
the reason, where Chromium or Playwright is missing (CI installs chromium: .ci/run).
"""

from __future__ import annotations

import pytest

from harness.report import build_report
from tests.support.browser import chromium_path, inspect_report, open_page
from tests.support.demo import XSS_NAME, small_run, synthetic_10k

pytestmark = pytest.mark.browser
VISIBLE_ROWS = "t => [...t.tBodies[0].rows].filter(r => r.offsetParent !== null).length"


def _need_browser() -> None:
    if chromium_path() is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium; .ci/run installs it in CI)")
    pytest.importorskip("playwright.sync_api", reason="playwright (PyPI) is not installed")


@pytest.fixture(scope="module")
def browser_report(tmp_path_factory):
    _need_browser()
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


def test_summary_in_first_viewport(browser_report) -> None:
    """Health line, verdicts and the heat map lie inside the first 1400×900 screen, nothing scrolled."""
    html, _ = browser_report
    with open_page(html.resolve().as_uri(), width=1400, height=900) as (page, log):
        for sel in ("#healthline", ".verdict-list", "table.heat"):
            box = page.locator(sel).bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= 900, (sel, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= 1400, (sel, box)
        assert page.locator(".verdict-list li").count() >= 2
        assert page.evaluate("window.scrollY") == 0
    assert log["console_errors"] == [] and log["page_errors"] == []


def test_table_filter_sort_show_all(browser_report) -> None:
    """Typing into a filter changes the visible row count; a header click sorts; 'show all' reveals every row."""
    html, _ = browser_report
    with open_page(html.resolve().as_uri(), width=1400, height=900) as (page, log):
        page.wait_for_selector("body[data-tables-ready]")
        page.click("button[data-expand='1']")
        table = page.locator("#catalog ~ .tablewrap table").first
        wrap_input = page.locator("#catalog ~ .tabletools input").first
        before = table.evaluate(VISIBLE_ROWS)
        assert before >= 3
        wrap_input.fill("pathwise")
        after = table.evaluate(VISIBLE_ROWS)
        assert 0 < after < before, (before, after)
        wrap_input.fill("")
        assert table.evaluate(VISIBLE_ROWS) == before
        head = table.locator("thead th").first
        names = table.evaluate("t => [...t.tBodies[0].rows].map(r => r.cells[0].textContent)")
        head.click()
        assert head.get_attribute("aria-sort") == "ascending"
        head.click()
        desc = table.evaluate("t => [...t.tBodies[0].rows].map(r => r.cells[0].textContent)")
        assert desc == sorted(names, reverse=True), desc
        # a long table (the per-problem overview) starts at its top rows and has a working "show all"
        ov = page.locator("#overview ~ .tabletools").first
        n_all = page.locator("#overview ~ .tablewrap table").first.evaluate("t => t.tBodies[0].rows.length")
        shown = page.locator("#overview ~ .tablewrap table").first.evaluate(VISIBLE_ROWS)
        if n_all > 20:
            assert shown == 20
            ov.locator("button").click()
            assert page.locator("#overview ~ .tablewrap table").first.evaluate(VISIBLE_ROWS) == n_all
        else:
            assert shown == n_all
    assert log["console_errors"] == [] and log["page_errors"] == [] and log["requests"] == []


def test_sections_open_from_keyboard(browser_report) -> None:
    html, _ = browser_report
    with open_page(html.resolve().as_uri(), width=1400, height=900) as (page, _log):
        summary = page.locator("details.runinfo > summary")
        assert page.evaluate("document.querySelector('details.runinfo').open") is False
        summary.focus()
        page.keyboard.press("Enter")
        assert page.evaluate("document.querySelector('details.runinfo').open") is True
        alts = page.evaluate("[...document.images].map(i => i.alt)")
        assert alts and all(len(a) > 10 for a in alts), "every figure has a text alternative"


@pytest.mark.slow
def test_synthetic_10k_cells(tmp_path) -> None:
    """10,080 synthetic cells: the report stays under 10 MB and renders with no error or request."""
    _need_browser()
    run = synthetic_10k(tmp_path / "run10k")
    html = build_report([run], tmp_path / "r10k.html")
    assert html.stat().st_size < 10 * 2**20, html.stat().st_size
    r = inspect_report(html, width=1400, height=900, expand=False)
    assert r["console_errors"] == [] and r["page_errors"] == [] and r["requests"] == []
    assert "10080 cells" in r["body_text"].replace(",", "")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    _need_browser()
    from tests.support.asv_dashboard import published_dashboard

    return published_dashboard(tmp_path_factory.mktemp("asv"))


def test_asv_dashboard_offline(dashboard) -> None:
    """The published dashboard references only local assets and loads with no request leaving 127.0.0.1."""
    from tests.support.asv_dashboard import serve

    index = (dashboard / "index.html").read_text()
    assert "https://" not in index.split("</head>")[0], "a CDN reference is left in <head>"
    assert "integrity=" not in index and 'src="vendor/jquery-3.3.1.min.js"' in index
    with serve(dashboard) as url, open_page(url, local=(url, "data:")) as (page, log):
        page.wait_for_function("() => typeof $ === 'function' && typeof $.plot === 'function'", timeout=20_000)
        page.wait_for_selector(".benchmark-container, #summarygrid-display a", timeout=20_000)
        assert page.locator("#summarygrid-display a, .benchmark-container").count() > 0
    assert log["requests"] == [], f"requests leaving the machine: {log['requests'][:5]}"
    assert log["console_errors"] == [] and log["page_errors"] == [], (log["console_errors"], log["page_errors"])


def test_bundle_offline_rewrites_and_rejects_unknown(tmp_path) -> None:
    """Every known CDN reference becomes a local vendor/ path (no SRI, no crossorigin); an unknown one is an
    error naming the page and the URL, and nothing is rewritten."""
    from suites.benchmarks.asv_tools import VENDOR_DIR, VENDOR_MAP, bundle_offline
    from tests.support.asv_dashboard import ROOT

    html = tmp_path / "html"
    html.mkdir()
    tags = "".join(f'<script src="{u}" integrity="sha256-x" crossorigin="anonymous"></script>' for u in VENDOR_MAP)
    (html / "index.html").write_text(f"<html><head>{tags}</head></html>")
    assert sorted(bundle_offline(html, ROOT / VENDOR_DIR)) == sorted(VENDOR_MAP)
    text = (html / "index.html").read_text()
    assert "https://" not in text and "integrity" not in text and "crossorigin" not in text
    assert all((html / "vendor" / f).is_file() for f in VENDOR_MAP.values())
    bad = '<html><head><script src="https://cdn.example.org/new.js"></script></head></html>'
    (html / "index.html").write_text(bad)
    with pytest.raises(SystemExit, match="cdn.example.org/new.js"):
        bundle_offline(html, ROOT / VENDOR_DIR)
    assert (html / "index.html").read_text() == bad
