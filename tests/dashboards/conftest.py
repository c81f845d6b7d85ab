"""Fixtures of the dashboard tests: seeded databases and the settings (environment) the app reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.core.settings import get_settings
from tests.dashboard_seed import Seeded
from tests.dashboards.kit import ACCOUNTS, PASSWORD_HASH, seeded_db


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Seeded]:
    """Read-only tests share one seeded database (with a viewer, an analyst and an admin account)."""
    return seeded_db(tmp_path_factory.mktemp("dash") / "shared.db", ACCOUNTS)


@pytest.fixture
def own(tmp_path: Path) -> tuple[str, Seeded]:
    """A seeded database of its own (with the accounts) for a test that writes."""
    return seeded_db(tmp_path / "own.db", ACCOUNTS)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the dashboard at a database and an auth mode (settings are read from the environment).

    ``auth``: ``accounts`` (log in with an account), ``password`` (also the bootstrap admin of
    FINPULSE_DASHBOARD_PASSWORD_HASH), ``disabled`` (read-only, no login). ``extra``: more FINPULSE_ variables.
    """

    def apply(url: str, *, auth: str = "disabled", **extra: str) -> None:
        monkeypatch.setenv("FINPULSE_DATABASE_URL", url)
        # Consumers count as alive for 3 stats intervals: 30 min here, so the seeded heartbeats stay fresh.
        monkeypatch.setenv("FINPULSE_STATS_INTERVAL_S", "600")
        monkeypatch.setenv("FINPULSE_MOVERS_MIN_STORIES", "1")  # the seed has 1-2 stories per entity and bucket
        monkeypatch.delenv("FINPULSE_DASHBOARD_PASSWORD_HASH", raising=False)
        monkeypatch.delenv("FINPULSE_DASHBOARD_AUTH_DISABLED", raising=False)
        if auth == "disabled":
            monkeypatch.setenv("FINPULSE_DASHBOARD_AUTH_DISABLED", "true")
        elif auth == "password":
            monkeypatch.setenv("FINPULSE_DASHBOARD_PASSWORD_HASH", PASSWORD_HASH)
        for name, value in extra.items():
            monkeypatch.setenv(f"FINPULSE_{name.upper()}", value)
        get_settings.cache_clear()

    yield apply
    get_settings.cache_clear()
