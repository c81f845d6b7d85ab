"""Logins on the dashboard: one answer for a wrong name or password, a lock-out that a fresh browser session does not
reset, idle and absolute session limits, log-out, the deprecated bootstrap admin, and no open dashboard on the
network with auth disabled."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from dashboards.cli import dashboard_app, is_loopback
from monitor.core import db
from schemas.accounts import LoginThrottle
from tests.dashboard_seed import Seeded
from tests.dashboards.kit import PASSWORD, button, fresh_login, labels, login, metrics, run_app, texts

LOCKED = "Too many failed logins. Try again after "


def test_the_sixth_wrong_password_from_a_fresh_session_is_locked_out(env: Any, own: tuple[str, Seeded]) -> None:
    url, _ = own
    env(url, auth="accounts", login_max_failures="5", login_lockout_s="60")
    answers = [texts(login(run_app(), "ann", f"guess {n}"), "error") for n in range(5)]  # a new session each
    assert answers == ["Wrong name or password."] * 5
    at = login(run_app(), "ann")  # the sixth try, in yet another session, even with the right password
    assert texts(at, "error").startswith(LOCKED) and texts(at, "error").endswith(" UTC.")
    assert not at.metric
    engine = db.make_engine(url)
    with Session(engine) as session:
        row = session.get_one(LoginThrottle, "account:ann")
    engine.dispose()
    assert row.failures == 5 and row.locked_until is not None


def test_a_wrong_name_gets_the_same_answer_as_a_wrong_password(env: Any, own: tuple[str, Seeded]) -> None:
    env(own[0], auth="accounts")
    at = run_app()
    wrong_name = texts(login(at, "nobody"), "error")
    wrong_password = texts(login(at, "ann", "nope"), "error")
    disabled_role_free = texts(login(at, "", "nope"), "error")
    assert wrong_name == wrong_password == disabled_role_free == "Wrong name or password."


def test_an_idle_session_is_logged_out(env: Any, shared: tuple[str, Seeded]) -> None:
    env(shared[0], auth="accounts", dashboard_session_idle_s="2")
    at = fresh_login("ann")
    assert metrics(at)
    time.sleep(2.5)
    at.run()
    assert not at.metric and at.text_input(key="login_password")
    assert texts(at, "info") == ("You were logged out after 2s without activity (FINPULSE_DASHBOARD_SESSION_IDLE_S). "
                                 "Log in again.")


def test_a_session_ends_at_its_maximum_age_and_on_log_out(env: Any, shared: tuple[str, Seeded]) -> None:
    env(shared[0], auth="accounts", dashboard_session_max_s="2")
    at = fresh_login("root")
    assert metrics(at)
    time.sleep(2.5)
    at.run()
    assert not at.metric
    assert "session ended 2s after you logged in (FINPULSE_DASHBOARD_SESSION_MAX_S)" in texts(at, "info")
    env(shared[0], auth="accounts")
    login(at, "root")
    assert metrics(at) and "Log out" in labels(at)
    button(at, "Log out").click().run()
    assert not at.metric and "You logged out." in texts(at, "info")


def test_the_bootstrap_password_still_logs_in_as_admin_with_a_deprecation_warning(
        env: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    from tests.dashboards.kit import seeded_db

    url, _ = seeded_db(tmp_path / "bootstrap.db")  # no account yet: the hash is the only way in
    env(url, auth="password")
    at = run_app()
    assert at.text_input(key="login_name").value == "admin"
    assert texts(login(at, "admin", "wrong"), "error") == "Wrong name or password."
    with caplog.at_level(logging.WARNING, logger="monitor.core.accounts"):
        login(at, "admin", PASSWORD)
    assert metrics(at)
    warning = texts(at, "warning")
    assert "create accounts with `finpulse users add NAME --role admin` and unset " \
           "FINPULSE_DASHBOARD_PASSWORD_HASH" in warning
    assert "bootstrap admin" in caplog.text and "finpulse users add NAME --role admin" in caplog.text
    assert "Signed in as **admin** (admin)" in texts(at, "caption")
    run_app("audit", at)  # an admin: the Audit page is listed


def test_with_auth_disabled_the_cli_refuses_a_non_loopback_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.core.settings import get_settings

    monkeypatch.setenv("FINPULSE_DASHBOARD_AUTH_DISABLED", "true")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(dashboard_app, ["--address", "0.0.0.0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "loopback address only, not 0.0.0.0; use --address 127.0.0.1" in line
    assert "finpulse users add NAME --role admin" in line
    assert all(map(is_loopback, ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "10.1.2.3", "::", "dashboard.example.com"]))


def test_the_bootstrap_admins_failures_are_throttled_and_an_admin_account_replaces_it(tmp_path: Any) -> None:
    from dashboards.auth import sign_in
    from monitor.core.accounts import LoginRefused
    from monitor.core.settings import load_settings
    from tests.dashboards.kit import ACCOUNT_PASSWORD, PASSWORD_HASH, add_accounts

    url = f"sqlite:///{tmp_path / 'bootstrap.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    settings = load_settings(database_url=url, dashboard_password_hash=PASSWORD_HASH, login_max_failures=2)
    assert sign_in(engine, "admin", PASSWORD, "10.0.0.9", settings).role == "admin"
    for client in ("10.0.0.1", "10.0.0.2"):  # two clients, one account key: it is locked after the second
        with pytest.raises(LoginRefused, match=r"^Wrong name or password\.$"):
            sign_in(engine, "admin", "guess", client, settings)
    with pytest.raises(LoginRefused, match=LOCKED):
        sign_in(engine, "admin", PASSWORD, "10.0.0.3", settings)
    add_accounts(url, {"admin": "viewer"})  # a real account named admin: the shared password no longer opens it
    with Session(engine) as session:
        session.delete(session.get_one(LoginThrottle, "account:admin"))
        session.commit()
    with pytest.raises(LoginRefused, match=r"^Wrong name or password\.$"):
        sign_in(engine, "admin", PASSWORD, "10.0.0.4", settings)
    assert sign_in(engine, "admin", ACCOUNT_PASSWORD, "10.0.0.4", settings).role == "viewer"
    engine.dispose()
