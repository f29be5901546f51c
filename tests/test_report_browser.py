"""The report in a real browser: headless Chromium opens the micro run's `index.html` from disk
with the network off, every figure decodes, every table has rows; a full-page screenshot is
kept under `results/browser/` (a CI artefact)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import unavailable

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "results/browser"
pytestmark = pytest.mark.slow


def _chromium() -> str:
    """Debian's Chromium (`.ci/run` installs it), or fail under CI / skip elsewhere."""
    path = os.environ.get("GPTPIPE_CHROMIUM") or shutil.which("chromium")
    playwright = True
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        playwright = False
    if path and playwright:
        return path
    msg = ("headless Chromium is needed: install Debian's `chromium` package (or set "
           "GPTPIPE_CHROMIUM) and the test extra (`pip install -e '.[test]'`: playwright)")
    unavailable(msg)


def test_the_report_renders_in_headless_chromium(micro_smk):
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    page_file = micro_smk / "results/report/index.html"
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            # As root in a container Chromium needs --no-sandbox; the rest keep it off a network
            # it must not need (the page is self-contained).
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            tables = page.eval_on_selector_all(
                "table", "els => els.map(t => t.querySelectorAll('tbody tr, tr').length)")
            headings = page.eval_on_selector_all("h2, h3", "els => els.map(e => e.textContent)")
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "report.png"), full_page=True)
        finally:
            browser.close()

    assert len(images) >= 3, images  # pre-training curves, learning rate, fine-tuning
    assert all(ok and w > 0 and h > 0 for ok, w, h in images), images
    assert len(tables) >= 4 and all(rows >= 2 for rows in tables), tables  # header + a row
    assert any("Table 4" in h for h in headings) and any("Table 5" in h for h in headings), \
        headings
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert (SHOTS / "report.png").stat().st_size > 10_000
