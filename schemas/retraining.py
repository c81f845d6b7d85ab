"""Continuous retraining: the run log, the cross-process lock row, drift reports and the scheduler's job store.

``job_run`` is what makes scheduled work run once: a scheduled run records its *slot* (the trigger's fire time, the
same in every scheduler process) and ``(job, slot)`` is unique. ``job_lock`` is the lock on SQLite (PostgreSQL
uses an advisory lock instead, see :mod:`monitor.core.db_lock`). ``apscheduler_jobs`` is APScheduler 3's own
table, declared here so that Alembic creates it and never proposes to drop it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Float, LargeBinary, Table, Unicode, UniqueConstraint
from sqlmodel import Field, SQLModel

from schemas.types import UTCDateTime, utcnow

JOB_STATUSES = ("running", "skipped", "promoted", "rejected", "failed", "done")


class JobRun(SQLModel, table=True):
    """One run of a scheduled or manual job (``retrain`` or ``drift``) and how it ended."""

    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "slot", name="uq_job_run_job_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=32, index=True)
    slot: str | None = Field(default=None, max_length=40, description="Scheduled fire time (ISO, UTC); None = manual.")
    trigger: str = Field(default="cli", max_length=16, description="schedule | cli | drift")
    owner: str = Field(max_length=200, description="host:pid of the process that ran it")
    status: str = Field(default="running", max_length=16, index=True,
                        description="running|skipped|promoted|rejected|failed|done")
    reason: str | None = Field(default=None, max_length=2000)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class JobLock(SQLModel, table=True):
    """A named lock with an expiry (SQLite): the holder refreshes ``expires_at``; a dead holder's lock lapses."""

    __tablename__ = "job_lock"

    name: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=200)
    acquired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class DriftReport(SQLModel, table=True):
    """Predicted-label and confidence distributions of recent news against the champion's validation ones."""

    __tablename__ = "drift_report"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    trigger: str = Field(default="cli", max_length=16, description="schedule | retrain | cli")
    model_version: str = Field(max_length=100, index=True)
    window_start: datetime = Field(sa_type=UTCDateTime)
    window_end: datetime = Field(sa_type=UTCDateTime)
    news_count: int = 0
    reference_source: str = Field(default="metrics", max_length=32, description="metrics | gold | sample")
    label_js: float | None = Field(default=None, description="JS divergence (base 2) of the predicted labels")
    confidence_js: float | None = Field(default=None, description="JS divergence (base 2) of the confidence bins")
    js: float | None = Field(default=None, description="The larger of the two; compared with the threshold")
    threshold: float
    drifted: bool = False
    reference: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    current: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    alert_id: int | None = None
    note: str | None = Field(default=None, max_length=1000)


# APScheduler 3's SQLAlchemyJobStore table, column for column (it pickles the job state; only our own job
# functions, referenced by name, are ever stored there).
apscheduler_jobs = Table(
    "apscheduler_jobs", SQLModel.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
