"""`finpulse users`: accounts through the real CLI and database (SQLite and PostgreSQL), every change audited."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from monitor.app import app
from monitor.core import audit, db
from monitor.core.accounts import LoginRefused, authenticate, find, verify_password
from monitor.core.errors import ConfigError
from monitor.core.settings import get_settings, load_settings

ALICE_PW, BOB_PW, NEW_PW = "alice-correct-horse", "bob-battery-staple", "alice-new-password"


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("FINPULSE_DATABASE_URL", db_url)
    monkeypatch.setenv("LOGNAME", "os-tester")  # getpass.getuser() reads LOGNAME first: the OS user of the CLI
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, *args: str, stdin: str | None = None) -> str:
    result = cli.invoke(app, list(args), input=stdin)
    assert result.exception is None and result.exit_code == 0, result.output
    return result.output


def error(cli: CliRunner, *args: str, stdin: str | None = None) -> str:
    result = cli.invoke(app, list(args), input=stdin)
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    message = str(result.exception)
    assert "\n" not in message
    return message


def login(url: str, name: str, password: str) -> str:
    engine = db.make_engine(url)
    try:
        return authenticate(engine, name, password, "127.0.0.1", load_settings(database_url=url)).role
    finally:
        engine.dispose()


def test_accounts_are_added_changed_disabled_and_audited(cli: CliRunner, db_url: str) -> None:
    assert run(cli, "users", "add", "alice", "--role", "admin", "--password-stdin", "--actor", "ops-lead",
               stdin=f"{ALICE_PW}\n") == "added alice (admin)\n"
    run(cli, "users", "add", "bob", "--role", "viewer", "--password-stdin", stdin=f"{BOB_PW}\n")
    listed = [json.loads(line) for line in run(cli, "users", "list", "--json").splitlines()]
    assert [(row["name"], row["role"], row["disabled"]) for row in listed] == [("alice", "admin", False),
                                                                                 ("bob", "viewer", False)]
    table = run(cli, "users", "list")
    assert "alice" in table and "viewer" in table and "$2b$" not in table  # never the hashes
    assert login(db_url, "alice", ALICE_PW) == "admin" and login(db_url, "bob", BOB_PW) == "viewer"

    assert run(cli, "users", "set-role", "bob", "analyst") == "bob is now analyst\n"
    assert login(db_url, "bob", BOB_PW) == "analyst"
    run(cli, "users", "reset-password", "alice", "--password-stdin", "--actor", "ops-lead", stdin=f"{NEW_PW}\n")
    assert login(db_url, "alice", NEW_PW) == "admin"
    with pytest.raises(LoginRefused):
        login(db_url, "alice", ALICE_PW)

    # The last enabled admin can be neither disabled nor demoted; with a second admin it can.
    assert "alice: it is the last enabled admin" in error(cli, "users", "disable", "alice")
    assert "cannot make a viewer of alice: it is the last enabled admin" in error(
        cli, "users", "set-role", "alice", "viewer")
    run(cli, "users", "add", "carol", "--role", "admin", "--password-stdin", stdin="carol-pw\n")
    assert run(cli, "users", "disable", "alice") == "disabled alice\n"
    with pytest.raises(LoginRefused):
        login(db_url, "alice", NEW_PW)
    assert "carol: it is the last enabled admin" in error(cli, "users", "set-role", "carol", "analyst")

    engine = db.make_engine(db_url)
    try:
        events = sorted(audit.events(engine), key=lambda event: event.id or 0)
        with db.session_scope(engine) as session:
            stored = find(session, "alice")
            assert stored is not None and verify_password(NEW_PW, stored.password_hash) and stored.disabled
    finally:
        engine.dispose()
    assert [(e.action, e.target, e.actor, e.role, e.source) for e in events] == [
        ("account.create", "account alice", "ops-lead", "admin", "cli"),
        ("account.create", "account bob", "os-tester", "admin", "cli"),
        ("account.set_role", "account bob", "os-tester", "admin", "cli"),
        ("account.reset_password", "account alice", "ops-lead", "admin", "cli"),
        ("account.create", "account carol", "os-tester", "admin", "cli"),
        ("account.disable", "account alice", "os-tester", "admin", "cli"),
    ]
    assert events[0].before is None and events[0].after == {"name": "alice", "role": "admin", "disabled": False}
    assert events[2].before == {"name": "bob", "role": "viewer", "disabled": False}
    assert events[2].after == {"name": "bob", "role": "analyst", "disabled": False}
    assert events[5].before["disabled"] is False and events[5].after["disabled"] is True  # type: ignore[index]
    assert set(events[3].after or {}) == {"password_changed_at"}
    trail = json.dumps([(e.before, e.after) for e in events])
    assert not any(secret in trail for secret in (ALICE_PW, BOB_PW, NEW_PW, "carol-pw", "$2b$", "password_hash"))


def test_passwords_are_prompted_twice_without_echo(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db.upgrade(sqlite_url)
    monkeypatch.setenv("FINPULSE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    cli = CliRunner()
    result = cli.invoke(app, ["users", "add", "dave", "--role", "analyst"],
                        input="one-pw\nother-pw\nsame-pw\nsame-pw\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output and "same-pw" not in result.output and "one-pw" not in result.output
    assert login(sqlite_url, "dave", "same-pw") == "analyst"
    get_settings.cache_clear()


def test_bad_input_gives_one_line(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db.upgrade(sqlite_url)
    monkeypatch.setenv("FINPULSE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    cli = CliRunner()
    assert "unknown role 'boss'" in error(cli, "users", "add", "erin", "--role", "boss", "--password-stdin",
                                          stdin="pw\n")
    assert "the password is empty" in error(cli, "users", "add", "erin", "--role", "viewer", "--password-stdin",
                                            stdin="\n")
    assert "invalid account name 'two words'" in error(cli, "users", "add", "two words", "--role", "viewer",
                                                       "--password-stdin", stdin="pw\n")
    run(cli, "users", "add", "erin", "--role", "viewer", "--password-stdin", stdin="pw\n")
    assert "an account named 'erin' exists" in error(cli, "users", "add", "erin", "--role", "admin",
                                                     "--password-stdin", stdin="pw\n")
    assert "no account named 'frank'" in error(cli, "users", "disable", "frank")
    assert "no account named 'frank'" in error(cli, "users", "reset-password", "frank", "--password-stdin",
                                               stdin="pw\n")
    assert "unknown role 'root'" in error(cli, "users", "set-role", "erin", "root")
    assert run(cli, "users", "disable", "erin") == "disabled erin\n"  # not an admin: no last-admin rule
    assert run(cli, "users", "enable", "erin") == "enabled erin\n"
    get_settings.cache_clear()
