"""The real dashboard (``finpulse dashboard``) in headless Chromium: log in, see the overview's charts render.

Uses Debian's Chromium (never a downloaded browser) through Playwright. The screenshot is kept under
``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from monitor.core import db
from monitor.core.settings import load_settings
from tests.dashboard_seed import seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "browser-secret"
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[str]:
    """``finpulse dashboard`` on a free port against a seeded SQLite database; yields its URL."""
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is missing: apt-get install chromium chromium-driver")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    db.upgrade(url)
    seed(url, load_settings(database_url=url))
    port = _free_port()
    env = {**os.environ, "FINPULSE_DATABASE_URL": url,
           "FINPULSE_DASHBOARD_PASSWORD_HASH": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}
    env.pop("FINPULSE_DASHBOARD_AUTH_DISABLED", None)
    log_path = tmp_path / "dashboard.log"
    finpulse = Path(sys.executable).parent / "finpulse"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([str(finpulse), "dashboard", "--port", str(port)], env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _healthy(base):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dashboard did not start: {log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_login_and_overview_charts_render_in_chromium(dashboard: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.set_default_timeout(60_000)
            page.goto(dashboard)
            password = page.get_by_label("Password", exact=True)
            password.fill("not the password")
            password.press("Enter")
            page.get_by_text("Wrong password.").wait_for()
            assert page.locator(".vega-embed").count() == 0
            password.fill(PASSWORD)
            password.press("Enter")
            page.get_by_text("Market sentiment and volume").wait_for()
            # Vega draws into a canvas (or an svg); wait until both charts (trend, heat map) are drawn.
            charts = page.locator(".vega-embed canvas, .vega-embed svg.marks")
            charts.nth(1).wait_for()
            assert charts.count() >= 2
            box = charts.first.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 150
            tile = page.locator("[data-testid='stMetric']", has_text="Stories / min")
            assert tile.locator("[data-testid='stMetricValue']").inner_text().strip() == "1.4"  # 7 in 5 min
            page.wait_for_timeout(1000)  # let the charts finish their first paint before the screenshot
            page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
        finally:
            browser.close()
