"""Reads of the audit trail for the Audit page: events as plain dicts, and what each change changed."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from monitor.core import audit
from schemas.accounts import AuditEvent

MAX_VALUE_CHARS = 80


def events(engine: Engine, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` events, newest first, as plain dicts (before/after included)."""
    return [row.model_dump() for row in audit.events(engine, limit=limit)]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """A diff of one event, a line per field: ``field: old → new``, ``+ field: new`` (added), ``- field: old``."""
    old, new = before or {}, after or {}
    lines = []
    for key in sorted(set(old) | set(new), key=str):
        if key not in old:
            lines.append(f"+ {key}: {_short(new[key])}")
        elif key not in new:
            lines.append(f"- {key}: {_short(old[key])}")
        elif old[key] != new[key]:
            lines.append(f"{key}: {_short(old[key])} → {_short(new[key])}")
    return lines


def export(rows: list[dict[str, Any]]) -> str:
    """The events as JSON lines (oldest first), as ``finpulse audit export --format jsonl`` writes them."""
    return "".join(line + "\n" for line in audit.export_lines([AuditEvent.model_validate(row) for row in rows],
                                                              "jsonl"))
