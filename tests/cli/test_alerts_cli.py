"""`finpulse alerts`: rule management through the real CLI and database; invalid rules name their field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from monitor.alerts.evaluator import AlertEvaluator
from monitor.app import app
from monitor.core import db
from monitor.core.errors import ConfigError
from monitor.core.settings import get_settings, load_settings
from monitor.signals.buckets import record_batch
from schemas.alerts import METRICS
from tests.signal_helpers import scored_news
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
    (["--min-stories", "0"], "min_stories"),
    (["--no-data-windows", "-1"], "no_data_windows"),
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


def test_min_stories_and_no_data_windows_round_trip(sqlite_cli: CliRunner) -> None:
    cli = sqlite_cli
    out = run(cli, "alerts", "add", "aapl-quiet", "--entity", "AAPL", "--metric", "volume_surprise", "--op", "gt",
              "--threshold", "6", "--min-stories", "5", "--no-data-windows", "0")
    assert "volume_surprise > 6" in out and "min 5 stories, resolves after 0 no-data windows" in out
    run(cli, *ADD)  # without the options: the defaults
    stored = rules(cli)
    assert (stored["aapl-quiet"]["min_stories"], stored["aapl-quiet"]["no_data_windows"]) == (5, 0)
    assert (stored["aapl-neg"]["min_stories"], stored["aapl-neg"]["no_data_windows"]) == (3, 2)
    run(cli, "alerts", "update", "aapl-quiet", "--min-stories", "2", "--no-data-windows", "4")
    stored = rules(cli)
    assert (stored["aapl-quiet"]["min_stories"], stored["aapl-quiet"]["no_data_windows"]) == (2, 4)
    assert stored["aapl-quiet"]["threshold"] == 6  # the rest unchanged
    assert "min 2 stories, resolves after 4 no-data windows" in run(cli, "alerts", "list")


def test_metric_help_lists_every_metric_the_new_ones_first() -> None:
    command = typer.main.get_command(app)
    add = command.commands["alerts"].commands["add"]  # type: ignore[attr-defined]
    [metric] = [param for param in add.params if param.name == "metric"]
    named = re.findall(rf"\b({'|'.join(METRICS)})\b", metric.help)
    assert named == list(METRICS) and named[:3] == ["volume_surprise", "sentiment_z", "sentiment_shrunk"]


def test_history_says_why_an_alert_fired_and_resolved(sqlite_cli: CliRunner, sqlite_url: str) -> None:
    """Real rules from the CLI, real stories and the real evaluator; the history prints its explanations."""
    cli = sqlite_cli
    rule = ["--metric", "mean_sentiment", "--op", "lt", "--threshold", "-0.5", "--window", "5m"]
    run(cli, "alerts", "add", "aapl", "--entity", "AAPL", *rule, "--min-stories", "3", "--no-data-windows", "1")
    run(cli, "alerts", "add", "msft", "--entity", "MSFT", *rule, "--min-stories", "5")
    start = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    stories = [scored_news(f"{ticker}{i}", start + timedelta(seconds=i), f"bad news {ticker} {i}", -0.9,
                           tickers=[ticker]) for ticker, count in (("AAPL", 3), ("MSFT", 4)) for i in range(count)]
    settings = load_settings(database_url=sqlite_url, signal_bucket_s=60, alert_step_s=10, alert_lateness_s=0,
                             alert_notify_max_age_s=0, notify_urls=[], notify_secrets_file=None)
    engine = db.make_engine(sqlite_url)
    try:
        with db.session_scope(engine) as session:
            session.add_all(stories)
            session.flush()
            record_batch(session, stories, settings)
        AlertEvaluator(settings, engine).evaluate_until(start + timedelta(minutes=15), datetime(2030, 1, 1, tzinfo=UTC))
    finally:
        engine.dispose()
    lines = run(cli, "alerts", "history").splitlines()
    # MSFT's four stories are fewer than its rule's --min-stories 5: only AAPL fired, and with no stories left
    # in its window it resolved one window later (--no-data-windows 1).
    assert lines[0].startswith("#1 resolved warning aapl on TICKER:AAPL: mean_sentiment=-0.900 (threshold -0.5)")
    assert lines[1:3] == ["    why: 3 stories in 5m averaging -0.90", "    resolved: 0 stories in 5m averaging n/a"]
    assert not any("msft" in line for line in lines)
