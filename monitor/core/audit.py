"""The audit trail: one append-only row per change (who, when, what, before and after).

:func:`record` is called inside the transaction that makes the change, so a change and its audit row commit
together or not at all; the table refuses UPDATE and DELETE in the database (triggers of migration 0006).
"""

from __future__ import annotations

import csv
import getpass
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.core.accounts import Principal
from schemas.accounts import AuditEvent
from schemas.types import utcnow

EXPORT_COLUMNS = ("id", "at", "actor", "role", "source", "action", "target", "before", "after")


def cli_principal(actor: str | None = None) -> Principal:
    """Who runs a CLI command: ``--actor`` if given, else the OS user. Shell and database access make it admin."""
    name = (actor or "").strip() or _os_user()
    return Principal(name[:200], "admin", "cli")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with an arbitrary uid)
        return "unknown-os-user"


def record(session: Session, principal: Principal, action: str, target: str,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEvent:
    """Add the audit row to ``session`` (the caller's transaction)."""
    event = AuditEvent(actor=principal.name, role=principal.role, source=principal.source, action=action,
                       target=target[:300], before=_plain(before), after=_plain(after), at=utcnow())
    session.add(event)
    return event


def _plain(values: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON-safe copy (datetimes as ISO strings)."""
    return None if values is None else json.loads(json.dumps(values, default=str))


def events(engine: Engine, since: datetime | None = None, limit: int | None = None) -> list[AuditEvent]:
    with Session(engine) as session:
        query = select(AuditEvent).order_by(col(AuditEvent.id).desc())
        if since is not None:
            query = query.where(col(AuditEvent.at) >= since)
        if limit is not None:
            query = query.limit(limit)
        return list(session.exec(query).all())


def export_lines(rows: list[AuditEvent], fmt: str) -> Iterator[str]:
    """``jsonl`` (one object per line) or ``csv`` (before/after as JSON text), oldest first."""
    ordered = sorted(rows, key=lambda row: row.id or 0)
    if fmt == "jsonl":
        for row in ordered:
            yield json.dumps({name: _cell(getattr(row, name)) for name in EXPORT_COLUMNS})
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for row in ordered:
        writer.writerow([_cell(getattr(row, name), as_text=True) for name in EXPORT_COLUMNS])
    yield from buffer.getvalue().splitlines()


def _cell(value: Any, as_text: bool = False) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if as_text and isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value
