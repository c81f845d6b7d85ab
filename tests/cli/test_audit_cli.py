"""The audit trail: CLI writes record who and what with before and after, `finpulse audit export` writes JSON lines
and CSV, and the database refuses to change or delete a row (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from monitor.app import app
from monitor.core import audit, db
from monitor.core.accounts import Principal
from monitor.core.errors import ConfigError
from monitor.core.settings import get_settings
from schemas.types import utcnow

RULE = ["alerts", "add", "tsla-neg", "--entity", "TSLA", "--metric", "mean_sentiment", "--op", "lt",
        "--threshold", "-0.4", "--window", "15m"]


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("FINPULSE_DATABASE_URL", db_url)
    monkeypatch.setenv("LOGNAME", "os-tester")  # getpass.getuser() reads LOGNAME first
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, *args: str) -> str:
    result = cli.invoke(app, list(args))
    assert result.exception is None and result.exit_code == 0, result.output
    return result.output


def test_cli_changes_are_audited_and_exported(cli: CliRunner, db_url: str, tmp_path: Path) -> None:
    run(cli, *RULE, "--actor", "risk-lead")
    run(cli, "alerts", "update", "tsla-neg", "--threshold", "-0.5")
    run(cli, "alerts", "silence", "--rule", "tsla-neg", "--for", "2h", "--reason", "earnings", "--actor", "desk")
    run(cli, "alerts", "delete", "tsla-neg")

    lines = run(cli, "audit", "export").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["action"], r["actor"], r["source"], r["role"]) for r in rows] == [
        ("rule.create", "risk-lead", "cli", "admin"), ("rule.update", "os-tester", "cli", "admin"),
        ("silence.create", "desk", "cli", "admin"), ("rule.delete", "os-tester", "cli", "admin")]
    created, updated, silenced, deleted = rows
    assert created["before"] is None and created["after"]["threshold"] == -0.4
    assert updated["before"]["threshold"] == -0.4 and updated["after"]["threshold"] == -0.5
    assert updated["target"] == created["target"] == f"rule {created['after']['id']} (tsla-neg)"
    assert silenced["after"]["reason"] == "earnings" and silenced["after"]["rule_id"] == created["after"]["id"]
    assert deleted["before"]["name"] == "tsla-neg" and deleted["after"] is None
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)  # oldest first

    out = tmp_path / "audit.csv"
    assert "wrote 4 audit events" in run(cli, "audit", "export", "--format", "csv", "--output", str(out))
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["action"] for r in table] == [r["action"] for r in rows]
    assert json.loads(table[1]["before"])["threshold"] == -0.4 and table[3]["after"] == ""
    assert table[0]["actor"] == "risk-lead" and table[0]["at"] == created["at"]

    future = (utcnow() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert run(cli, "audit", "export", "--since", future) == ""
    assert len(run(cli, "audit", "export", "--since", "2000-01-01").splitlines()) == 4
    for args, message in ((["--format", "xml"], "--format 'xml': expected one of jsonl, csv"),
                          (["--since", "yesterday"], "--since 'yesterday': expected an ISO-8601")):
        result = cli.invoke(app, ["audit", "export", *args])
        assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_audit_rows_cannot_be_updated_or_deleted(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        with db.session_scope(engine) as session:
            audit.record(session, Principal("alice", "admin", "dashboard"), "rule.update", "rule 1 (x)",
                         {"threshold": 1}, {"threshold": 2})
        for statement in ("UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event"):
            with pytest.raises(DBAPIError, match="audit_event is append-only"), engine.begin() as connection:
                connection.execute(text(statement))
        [event] = audit.events(engine)
        assert (event.actor, event.before, event.after) == ("alice", {"threshold": 1}, {"threshold": 2})
    finally:
        engine.dispose()
