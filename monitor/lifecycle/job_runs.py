"""The ``job_run`` log: every retraining and drift run, and the once-per-slot claim of scheduled runs."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from monitor.core.db import session_scope
from monitor.core.db_lock import process_owner
from schemas.retraining import JobRun
from schemas.types import utcnow

log = logging.getLogger(__name__)


def start(engine: Engine, job: str, *, trigger: str = "cli", slot: str | None = None) -> JobRun | None:
    """Record a run as ``running``. For a scheduled ``slot`` that another process already took, return None:
    ``(job, slot)`` is unique, so of two schedulers firing the same slot only one gets a row."""
    row = JobRun(job=job, slot=slot, trigger=trigger, owner=process_owner())
    try:
        with session_scope(engine) as session:
            session.add(row)
            session.flush()
            session.refresh(row)
    except IntegrityError:
        return None
    return row


def slot_owner(engine: Engine, job: str, slot: str) -> JobRun | None:
    with Session(engine) as session:
        return session.exec(select(JobRun).where(col(JobRun.job) == job, col(JobRun.slot) == slot)).first()


def finish(engine: Engine, run: JobRun, status: str, reason: str | None = None,
           details: dict[str, Any] | None = None) -> JobRun:
    with session_scope(engine) as session:
        row = session.get_one(JobRun, run.id)
        row.status, row.reason, row.finished_at = status, (reason or "")[:2000] or None, utcnow()
        row.details = details or {}
        session.add(row)
        session.flush()
        session.refresh(row)
    return row


def recent(engine: Engine, job: str | None = None, limit: int = 20) -> list[JobRun]:
    """The newest runs first."""
    query = select(JobRun).order_by(col(JobRun.started_at).desc(), col(JobRun.id).desc()).limit(limit)
    if job is not None:
        query = query.where(col(JobRun.job) == job)
    with Session(engine) as session:
        return list(session.exec(query))
