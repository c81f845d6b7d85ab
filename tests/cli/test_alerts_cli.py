"""`finpulse alerts`: rule management through the real CLI and database; invalid rules name their field."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from monitor.app import app
from monitor.core import db
from monitor.core.errors import ConfigError
from monitor.core.settings import get_settings
from tests.stream_helpers import REPO

ADD = ["alerts", "add", "aapl-neg", "--entity", "$aapl", "--metric", "mean_sentiment", "--op", "lt",
       "--threshold", "-0.4", "--recovery", "-0.2", "--window", "15m", "--pending", "1m", "--repeat", "4h",
       "--severity", "critical", "--channel", "ops"]


def _runner(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("FINPULSE_DATABASE_URL", url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """On SQLite and PostgreSQL."""
    yield from _runner(db_url, monkeypatch)


@pytest.fixture
def sqlite_cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """Validation does not depend on the database: SQLite only, to keep the suite fast."""
    db.upgrade(sqlite_url)
    yield from _runner(sqlite_url, monkeypatch)


def run(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    return result.output


def error(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args))
    assert isinstance(result.exception, ConfigError), (result.exception, result.output)
    message = str(result.exception)
    assert "\n" not in message
    return message


def rules(cli: CliRunner) -> dict[str, dict[str, object]]:
    return {r["name"]: r for r in map(json.loads, run(cli, "alerts", "list", "--json").splitlines())}


def test_add_list_update_disable_delete(cli: CliRunner) -> None:
    assert "no alert rules" in run(cli, "alerts", "list")
    out = run(cli, *ADD)
    assert "added" in out and "TICKER:AAPL: mean_sentiment < -0.4 (recovers at -0.2)" in out
    run(cli, "alerts", "add", "market-busy", "--entity", "*", "--metric", "volume_ratio", "--op", ">=",
        "--threshold", "3")
    stored = rules(cli)
    assert set(stored) == {"aapl-neg", "market-busy"}
    aapl = stored["aapl-neg"]
    assert (aapl["entity"], aapl["comparator"], aapl["window_s"], aapl["pending_s"], aapl["repeat_interval_s"]) == (
        "TICKER:AAPL", "<", 900, 60, 14_400)
    assert aapl["channels"] == ["ops"] and aapl["severity"] == "critical" and aapl["enabled"] is True

    run(cli, "alerts", "update", "aapl-neg", "--threshold", "-0.5", "--channel", "ops", "--channel", "desk")
    aapl = rules(cli)["aapl-neg"]
    assert aapl["threshold"] == -0.5 and aapl["recovery_threshold"] == -0.2 and aapl["channels"] == ["ops", "desk"]

    assert "disabled aapl-neg" in run(cli, "alerts", "disable", "aapl-neg")
    assert rules(cli)["aapl-neg"]["enabled"] is False and "DISABLED" in run(cli, "alerts", "list")
    run(cli, "alerts", "enable", "aapl-neg")
    assert rules(cli)["aapl-neg"]["enabled"] is True

    assert "silence #" in run(cli, "alerts", "silence", "--rule", "aapl-neg", "--for", "2h", "--reason", "earnings")
    assert "deleted aapl-neg" in run(cli, "alerts", "delete", "aapl-neg")
    assert set(rules(cli)) == {"market-busy"}
    assert "no alert rule named 'aapl-neg'" in error(cli, "alerts", "delete", "aapl-neg")
    assert "no alert #42" in error(cli, "alerts", "ack", "42")
    assert "no alerts yet" in run(cli, "alerts", "history")


@pytest.mark.parametrize(("change", "field"), [
    (["--threshold", "3"], "threshold"),
    (["--metric", "sentiment"], "metric"),
    (["--op", "=="], "comparator"),
    (["--recovery", "-0.6"], "recovery_threshold"),
    (["--window", "soon"], "window_s"),
    (["--window", "5"], "window_s"),
    (["--entity", "FOO:bar"], "entity"),
    (["--channel", "Ops Room!"], "channels"),
    (["--severity", "panic"], "severity"),
])
def test_invalid_rule_is_rejected_naming_the_field(sqlite_cli: CliRunner, change: list[str], field: str) -> None:
    cli = sqlite_cli
    args = list(ADD)
    flag = change[0]
    if flag in args:
        position = args.index(flag)
        del args[position:position + 2]
    message = error(cli, *args, *change)
    assert message.startswith(f"invalid alert rule: {field}: "), message
    assert rules(cli) == {}


def test_invalid_update_and_duplicate_name(cli: CliRunner) -> None:
    run(cli, *ADD)
    assert error(cli, "alerts", "update", "aapl-neg", "--metric", "negative_share").startswith(
        "invalid alert rule: threshold: negative_share lies in [0, 1]")
    assert error(cli, *ADD).startswith("invalid alert rule: name: a rule named 'aapl-neg' exists")
    assert rules(cli)["aapl-neg"]["metric"] == "mean_sentiment"


def test_the_installed_command_prints_one_line_and_exits_2(sqlite_cli: CliRunner, sqlite_url: str) -> None:
    env = {"FINPULSE_DATABASE_URL": sqlite_url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "monitor.app", "alerts", "add", "x", "--entity", "AAPL",
                           "--metric", "count", "--op", "gt", "--threshold", "-1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == "error: invalid alert rule: threshold: count lies in [0, inf], found -1"
