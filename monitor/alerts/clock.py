"""One clock for every alert decision: event time, shared by the consumers of a group.

* A consumer's own clock is the newest ``published_at`` it has committed; once its last poll found nothing new
  (it has caught up), the wall clock. Never ahead of the wall clock.
* The group's clock is the minimum over its live members (their ``consumer_heartbeat`` rows carry their clocks):
  no rule is judged at a time for which a lagging member still holds unwritten stories.
* Rules are evaluated at every multiple of ``FINPULSE_ALERT_STEP_S`` up to the group clock less
  ``FINPULSE_ALERT_LATENESS_S``, and pending and repeat durations count in the same event time. So a backlog
  caught up at 1,000x speed gives the alerts it would have given live, and a quiet, caught-up stream still
  resolves and reminds on time (its clock is the wall clock).
* ``alert_clock.evaluated_through`` records the last step judged; only the evaluator that moves it from the value it
  read commits (a fence), so two evaluators never judge the same step twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, update
from sqlmodel import Session, col, select

from monitor.core.settings import Settings
from schemas.alerts import AlertClock
from schemas.consumers import ConsumerHeartbeat
from schemas.news import News
from schemas.types import utcnow

log = logging.getLogger(__name__)

CLOCK_NAME = "default"
STALE_BEATS = 3  # a member whose heartbeat is older than this many stats intervals is gone


class MemberClock:
    """This consumer's event clock."""

    def __init__(self) -> None:
        self.newest: datetime | None = None
        self.caught_up = False

    def observe(self, rows: Sequence[News]) -> None:
        if rows:
            newest = max(row.published_at for row in rows)
            self.newest = newest if self.newest is None else max(self.newest, newest)

    def reading(self, now: datetime) -> datetime | None:
        if self.caught_up:
            return now
        return None if self.newest is None else min(self.newest, now)


def group_clock(session: Session, settings: Settings, member: str, own: datetime | None,
                now: datetime) -> datetime | None:
    """The minimum clock over this member and the group's other live members; None while any is unknown."""
    fresh = now - timedelta(seconds=STALE_BEATS * settings.stats_interval_s)
    clocks = [own]
    for row in session.exec(select(ConsumerHeartbeat).where(
            col(ConsumerHeartbeat.group_id) == settings.kafka_group_id, col(ConsumerHeartbeat.member) != member,
            col(ConsumerHeartbeat.updated_at) >= fresh)).all():
        clocks.append(now if row.caught_up else row.event_clock)
    if any(clock is None for clock in clocks):
        return None
    return min(c for c in clocks if c is not None)


def floor_step(moment: datetime, step_s: int) -> datetime:
    return datetime.fromtimestamp(math.floor(moment.timestamp() / step_s) * step_s, UTC)


def steps_between(through: datetime, target: datetime, step_s: int) -> list[datetime]:
    """Grid points in (through, target]."""
    first = floor_step(through, step_s) + timedelta(seconds=step_s)
    out: list[datetime] = []
    moment = first
    while moment <= target:
        out.append(moment)
        moment += timedelta(seconds=step_s)
    return out


def evaluated_through(session: Session) -> datetime | None:
    row = session.get(AlertClock, CLOCK_NAME)
    return None if row is None else row.evaluated_through


def first_through(session: Session, settings: Settings, target: datetime) -> datetime:
    """Where a first evaluation starts: just before the oldest stored story within the catch-up span."""
    floor = target - timedelta(days=settings.alert_catchup_days)
    oldest = session.exec(select(News.published_at).where(col(News.published_at) > floor)
                          .order_by(col(News.published_at)).limit(1)).first()
    start = oldest if oldest is not None else target
    return floor_step(start, settings.alert_step_s) - timedelta(seconds=settings.alert_step_s)


def advance(session: Session, read: datetime | None, through: datetime, member: str) -> bool:
    """Move ``evaluated_through`` from ``read`` to ``through`` in the caller's transaction; False when another
    evaluator moved it first (the caller rolls back)."""
    if read is None:
        existing = session.get(AlertClock, CLOCK_NAME)
        if existing is not None:
            return False
        session.execute(insert(AlertClock).values(name=CLOCK_NAME, evaluated_through=through, member=member,
                                                  updated_at=utcnow()))
        return True
    result = session.execute(
        update(AlertClock).where(col(AlertClock.name) == CLOCK_NAME, col(AlertClock.evaluated_through) == read)
        .values(evaluated_through=through, member=member, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
