"""The real dashboard (``finpulse dashboard``) in headless Chromium: log in with an account, see the overview's
charts render, read why an alert fired, label a story as an analyst (the label row names the account), and find that
a page's URL does not get round the login.

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

import pytest
from sqlmodel import Session, col, select

from monitor.core import db
from monitor.core.settings import load_settings
from schemas.registry import LabelledNews
from tests.dashboard_seed import seed
from tests.dashboards.kit import ACCOUNT_PASSWORD, add_accounts

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
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
def dashboard(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``finpulse dashboard`` on a free port against a seeded SQLite database with an analyst account ``ann``;
    yields its URL and the database URL."""
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is missing: apt-get install chromium chromium-driver")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download needed)")
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    db.upgrade(url)
    seed(url, load_settings(database_url=url))
    add_accounts(url, {"ann": "analyst"})
    port = _free_port()
    env = {**os.environ, "FINPULSE_DATABASE_URL": url}
    env.pop("FINPULSE_DASHBOARD_AUTH_DISABLED", None)
    env.pop("FINPULSE_DASHBOARD_PASSWORD_HASH", None)
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
            yield base, url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_login_charts_and_an_analysts_label_in_chromium(dashboard: tuple[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    base, url = dashboard
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/alerts")  # a page's own URL shows the login too, never the page
            name, password = page.get_by_label("Name", exact=True), page.get_by_label("Password", exact=True)
            name.wait_for()
            page.get_by_text("Page not found").wait_for()  # Streamlit's notice: it runs the main page (the login)
            assert page.get_by_text("Firing (").count() == 0
            page.keyboard.press("Escape")  # close the notice
            name.fill("ann")
            password.fill("not the password")
            password.press("Enter")
            page.get_by_text("Wrong name or password.").wait_for()
            assert page.locator(".vega-embed").count() == 0
            password.fill(ACCOUNT_PASSWORD)
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
            page.get_by_text("Signed in as").wait_for()
            page.wait_for_timeout(1000)  # let the charts finish their first paint before the screenshot
            page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
            page.get_by_role("link", name="Alerts").click()
            # Why the alert fired, rendered from escaped Markdown as the plain sentence the evaluator wrote.
            page.get_by_text("4 stories in 15m averaging -0.90", exact=True).wait_for()
            page.get_by_role("link", name="Labelling").click()
            page.get_by_text("Labels are saved as").wait_for()
            page.get_by_role("button", name="Negative").click()
            page.get_by_text("Saved label #").wait_for()
        finally:
            browser.close()
    engine = db.make_engine(url)
    with Session(engine) as session:
        row = session.exec(select(LabelledNews).order_by(col(LabelledNews.id).desc())).first()
    engine.dispose()
    assert row is not None and (row.labelled_by, row.labeller_role, row.sentiment) == ("ann", "analyst", "negative")
