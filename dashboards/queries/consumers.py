"""The running consumers, as their heartbeat rows tell (``consumer_heartbeat``): the Overview's lag tile and
health lines. Plain functions of an Engine, free of Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from schemas.consumers import ConsumerHeartbeat
from schemas.types import utcnow


@dataclass(frozen=True, slots=True)
class Consumer:
    member: str  # host:pid
    topic: str
    partitions: tuple[int, ...]
    lag: int | None
    messages_per_s: float
    model_version: str | None
    status: str  # ok | starting | database_retrying | broker_reconnecting | model_refused
    detail: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Consumers:
    """The live consumers of one group (all groups when none was given), by topic and member."""

    live: tuple[Consumer, ...]

    @property
    def lag(self) -> int | None:
        """Their summed lag; None when none reported one."""
        lags = [c.lag for c in self.live if c.lag is not None]
        return sum(lags) if lags else None

    @property
    def reported_at(self) -> datetime | None:
        """The oldest of their reports."""
        return min((c.updated_at for c in self.live), default=None)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({c.topic for c in self.live}))

    @property
    def not_ok(self) -> tuple[Consumer, ...]:
        return tuple(c for c in self.live if c.status != "ok")


def live_consumers(engine: Engine, stale_after_s: float = 60.0, group_id: str | None = None) -> Consumers:
    """Consumers whose last report is at most ``stale_after_s`` old (older: crashed or stopped), of ``group_id``.

    Not filtered by topic: the group is what makes a consumer the monitor's (a replay into another group is not
    its lag), while the topic it reads may differ from this process's FINPULSE_KAFKA_TOPIC (the demo reads a topic
    of its own per run; a consumer may be started with another topic). A tile that says "0 consumers reporting"
    while they run is worse than one that names the topics they read.
    """
    query = select(ConsumerHeartbeat).where(
        col(ConsumerHeartbeat.updated_at) >= utcnow() - timedelta(seconds=stale_after_s))
    if group_id is not None:
        query = query.where(ConsumerHeartbeat.group_id == group_id)
    with Session(engine) as session:
        rows = session.exec(query.order_by(col(ConsumerHeartbeat.topic), col(ConsumerHeartbeat.member))).all()
    return Consumers(tuple(
        Consumer(member=row.member, topic=row.topic, partitions=tuple(row.partitions), lag=row.lag,
                 messages_per_s=row.messages_per_s, model_version=row.model_version, status=row.status,
                 detail=row.detail, updated_at=row.updated_at)
        for row in rows))
