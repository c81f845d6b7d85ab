"""The registry's champion: which version should serve, where its directory is, and refusals of broken versions.

Read by serving (:mod:`monitor.scoring.model_source`, :mod:`monitor.scoring.hot_swap`) and by the lifecycle jobs
(drift, retraining, promotion), so that all of them agree on one rule.

A version that a consumer could not load is *refused*: ``model_version.refused_at`` and ``refused_reason`` are set
(and a dated line is appended to its notes), so that every consumer and every restart skips it without trying it
again, and serves the last good version instead (:func:`earlier_champions`). Promoting the version again, after its
own test-load succeeds, clears the refusal (:func:`monitor.lifecycle.registry.promote`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.core.db import session_scope
from monitor.core.settings import Settings
from schemas.registry import ModelVersion
from schemas.types import utcnow

NOTES_MAX = 2000
REASON_MAX = 1000  # model_version.refused_reason


def champion(engine: Engine) -> ModelVersion | None:
    """The registry's champion row (the newest promoted one, should there ever be two), refused or not."""
    with Session(engine) as session:
        query = (select(ModelVersion).where(col(ModelVersion.status) == "champion")
                 .order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc()))
        return session.exec(query).first()


def earlier_champions(engine: Engine, exclude: int | None = None) -> list[ModelVersion]:
    """Where a consumer falls back when the champion is refused: the versions that were promoted before
    (``promoted_at`` set) and are not refused, the most recently promoted first."""
    with Session(engine) as session:
        query = select(ModelVersion).where(col(ModelVersion.promoted_at).is_not(None),
                                           col(ModelVersion.refused_at).is_(None))
        if exclude is not None:
            query = query.where(col(ModelVersion.id) != exclude)
        return list(session.exec(query.order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc())))


def model_path(row: ModelVersion, settings: Settings) -> Path:
    """The version's directory; registry rows may hold paths relative to FINPULSE_MODELS_DIR."""
    path = Path(row.path)
    if not path.is_absolute() and not path.exists():
        path = settings.models_dir / path
    return path


def one_line(error: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, shortened to ``limit`` characters (library errors span several lines)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def refusal_text(row: ModelVersion) -> str:
    """``champion v3 was refused at ... (reason)``: for log lines and the consumer's health detail."""
    when = f"{row.refused_at:%Y-%m-%d %H:%M:%S} UTC" if row.refused_at is not None else "an unknown time"
    return f"{row.version} was refused at {when} ({row.refused_reason or 'no reason recorded'})"


def record_refusal(engine: Engine, version: str, reason: str) -> None:
    """Mark ``version`` refused (``refused_at``, ``refused_reason``) and append a dated line to its notes (the
    newest kept when the column is full). Every consumer and restart then skips it until it is promoted again."""
    now = utcnow()
    line = f"{now:%Y-%m-%d %H:%M:%S} UTC refused by consumer {socket.gethostname()}:{os.getpid()}: {reason}"
    with session_scope(engine) as session:
        row = session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).first()
        if row is None:
            return
        notes = f"{row.notes}\n{line}" if row.notes else line
        row.notes = notes[-NOTES_MAX:]
        row.refused_at, row.refused_reason = now, reason[:REASON_MAX]
        session.add(row)
