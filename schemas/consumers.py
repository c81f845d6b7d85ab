"""What each running consumer last reported about itself: the Overview's consumer-lag tile reads this table.

Lag lives in the broker (end offsets minus the group's positions), which the dashboard does not talk to; each
consumer already computes it for its stats line, so it also writes it here every ``FINPULSE_STATS_INTERVAL_S``.
One row per consumer process, replaced in place; a clean shutdown deletes it, and a crashed consumer's row goes
stale, which the dashboard recognises by ``updated_at``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from schemas.types import UTCDateTime, utcnow


class ConsumerHeartbeat(SQLModel, table=True):
    __tablename__ = "consumer_heartbeat"

    member: str = Field(primary_key=True, max_length=200, description="host:pid of the consumer process")
    group_id: str = Field(max_length=200, index=True)
    topic: str = Field(max_length=200)
    partitions: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    lag: int | None = Field(default=None, description="Messages behind the end of its partitions; None = unknown")
    messages_per_s: float = 0.0
    model_version: str | None = Field(default=None, max_length=100)
    status: str = Field(default="ok", max_length=32,
                        description="ok | database_retrying | broker_reconnecting | model_refused")
    detail: str | None = Field(default=None, max_length=500, description="Why it is degraded, one line.")
    event_clock: datetime | None = Field(default=None, sa_type=UTCDateTime,
                                         description="Newest published_at it committed (event time).")
    caught_up: bool = Field(default=False, description="Its last poll found nothing new: its clock is the wall clock.")
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
