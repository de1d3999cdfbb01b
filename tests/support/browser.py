"""Open a report in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) and measure it.

Used by tests/test_browser.py and to produce docs/report-screenshot.png and the render-time numbers::

    python -m tests.support.browser REPORT.html [--screenshot PNG] [--full-page] [--expand]

Playwright's own browser download is not used: ``executable_path`` points at the system Chromium.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

IMAGES_JS = """async () => {
  const timeout = ms => new Promise((_, rej) => setTimeout(() => rej(new Error('decode timeout')), ms));
  const one = i => (i.loading === 'lazy' && !i.complete)
      ? Promise.resolve([-1, -1, 'lazy: not loaded yet (offscreen or collapsed)'])
      : Promise.race([i.decode(), timeout(15000)]).then(
          () => [i.naturalWidth, i.naturalHeight, ''], e => [0, 0, String(e)]);
  return Promise.all([...document.images].map(one));
}"""


def chromium_path() -> str | None:
    for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")):
        if p and Path(p).exists():
            return p
    return None


@contextlib.contextmanager
def open_page(
    url: str,
    *,
    width: int = 1400,
    height: int = 900,
    local: tuple[str, ...] = ("file:", "data:"),
    executable: str | None = None,
) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(page, log) for ``url`` in headless Chromium; log: console_errors, page_errors, dialogs and requests to
    any URL not starting with one of ``local`` (the network requests a test forbids), wall_load_s."""
    from playwright.sync_api import sync_playwright

    exe = executable or chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
    log: dict[str, Any] = {"console_errors": [], "page_errors": [], "dialogs": [], "requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: log["console_errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: log["page_errors"].append(str(e)))
            page.on("dialog", lambda d: (log["dialogs"].append(d.message), d.dismiss()))
            page.on("request", lambda r: None if r.url.startswith(local) else log["requests"].append(r.url))
            t0 = time.perf_counter()
            page.goto(url, wait_until="load")
            log["wall_load_s"] = time.perf_counter() - t0
            yield page, log
        finally:
            browser.close()


def paint_times(page: Any) -> dict[str, Any]:
    """Navigation and paint timings (ms from navigation start) of the loaded page."""
    page.wait_for_function("performance.getEntriesByType('paint').length >= 2", timeout=10_000)
    nav = json.loads(page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])"))
    paints = json.loads(page.evaluate("JSON.stringify(performance.getEntriesByType('paint'))"))
    first = {e["name"]: e["startTime"] for e in paints}
    return {
        "load_ms": nav.get("loadEventEnd"),
        "dom_content_loaded_ms": nav.get("domContentLoadedEventEnd"),
        "first_paint_ms": first.get("first-paint"),
        "first_contentful_paint_ms": first.get("first-contentful-paint"),
    }


def inspect_report(
    html: Path,
    screenshot: Path | None = None,
    *,
    width: int = 1280,
    height: int = 900,
    full_page: bool = False,
    expand: bool = True,
    executable: str | None = None,
) -> dict[str, Any]:
    """Load ``html`` from file:// and return what a reader's browser saw.

    Keys: console_errors, page_errors, dialogs, requests (URLs other than file:/data:), load_ms (navigation
    start to load event), dom_content_loaded_ms, first_paint_ms, first_contentful_paint_ms, wall_load_s,
    height_collapsed, height_expanded, width, images [(naturalWidth, naturalHeight, error)] (-1: lazy images
    not loaded yet), n_scripts, body_text.
    """
    with open_page(Path(html).resolve().as_uri(), width=width, height=height, executable=executable) as (page, out):
        out.update(paint_times(page))
        out["height_collapsed"] = page.evaluate("document.documentElement.scrollHeight")
        if screenshot and not expand:
            page.screenshot(path=str(screenshot), full_page=full_page)
        if expand and page.locator("button[data-expand='1']").count():
            page.click("button[data-expand='1']")
        out["images"] = page.evaluate(IMAGES_JS)
        out["height_expanded"] = page.evaluate("document.documentElement.scrollHeight")
        out["width"] = page.evaluate("document.documentElement.scrollWidth")
        out["n_scripts"] = page.evaluate("document.scripts.length")
        out["body_text"] = page.evaluate("document.body.innerText")
        if screenshot and expand:
            page.screenshot(path=str(screenshot), full_page=full_page)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.support.browser")
    ap.add_argument("html", type=Path)
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--full-page", action="store_true")
    ap.add_argument("--no-expand", action="store_true", help="leave collapsed sections collapsed")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    a = ap.parse_args(argv)
    r = inspect_report(
        a.html, a.screenshot, width=a.width, height=a.height, full_page=a.full_page, expand=not a.no_expand
    )
    r.pop("body_text")
    imgs = r.pop("images")
    r["n_images"], r["images_not_decoded"] = len(imgs), sum(1 for w, h, _ in imgs if w == 0 or h == 0)
    r["images_lazy_not_loaded"] = sum(1 for w, _, _ in imgs if w == -1)
    r["size_bytes"] = a.html.stat().st_size
    print(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
