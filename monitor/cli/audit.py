"""``finpulse audit export``: the append-only audit trail (who, when, what, before and after) as JSON lines or CSV.

Imports only typer at module level; the database loads inside the command.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from monitor.core.errors import ConfigError

audit_app = typer.Typer(help="The audit trail of every change (dashboard, CLI, scheduler).", no_args_is_help=True)
FORMATS = ("jsonl", "csv")


def parse_since(value: str) -> datetime:
    """An ISO-8601 date or time; UTC when it names no zone."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {value!r}: expected an ISO-8601 date or time such as 2026-01-31 or "
                          "2026-01-31T02:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@audit_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl (one object per line) or csv.")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="Only events at or after this ISO-8601 time (UTC if no zone).")]
    = None,
    output: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
) -> None:
    """Export the audit trail, oldest first: id, at, actor, role, source, action, target, before, after."""
    from monitor.core import audit, db  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    start = parse_since(since) if since is not None else None
    engine = db.make_engine(get_settings().database_url)
    try:
        db.require_migrated(engine)
        rows = audit.events(engine, since=start)
    finally:
        engine.dispose()
    lines = list(audit.export_lines(rows, fmt))
    if output is None:
        for line in lines:
            typer.echo(line)
        return
    try:
        output.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"--output {output}: cannot write ({error.strerror or error})") from None
    typer.echo(f"wrote {len(rows)} audit events to {output}", err=True)
