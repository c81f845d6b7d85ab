"""Publishes a consumer's lag, throughput and health state to the ``consumer_heartbeat`` table (the dashboard's
lag tile).

Writing is best effort: the table is a status display, so a failed write is logged and the consumer goes on;
it never holds up scoring or offset commits.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, delete

from monitor.stream.health import clean_detail
from schemas.consumers import ConsumerHeartbeat
from schemas.types import utcnow

log = logging.getLogger(__name__)

STATUS_MAX_CHARS = 32  # the column's width
FORGET_AFTER = timedelta(days=1)  # rows of consumers that crashed longer ago than this are deleted


def member_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """One consumer process's row: :meth:`beat` replaces it, :meth:`leave` deletes it."""

    def __init__(self, engine: Engine, group_id: str, topic: str, member: str | None = None) -> None:
        self.engine = engine
        self.group_id = group_id
        self.topic = topic
        self.member = member or member_name()
        self.started_at = utcnow()

    def beat(self, *, lag: int | None, messages_per_s: float, partitions: list[int],
             model_version: str | None, status: str = "ok", detail: str | None = None,
             event_clock: datetime | None = None, caught_up: bool = False) -> None:
        """``status``/``detail``: the consumer's health state (:class:`monitor.stream.health.HealthReporter`),
        shown on the Overview next to the lag."""
        row = ConsumerHeartbeat(member=self.member, group_id=self.group_id, topic=self.topic,
                                partitions=sorted(partitions), lag=lag, messages_per_s=round(messages_per_s, 3),
                                model_version=model_version, status=status[:STATUS_MAX_CHARS],
                                detail=clean_detail(detail), event_clock=event_clock, caught_up=caught_up,
                                started_at=self.started_at, updated_at=utcnow())
        try:
            with Session(self.engine) as session:
                session.merge(row)  # one row per member: insert the first time, update after
                # Crashed consumers never delete their rows (each container restart is a new host:pid).
                session.exec(delete(ConsumerHeartbeat).where(
                    col(ConsumerHeartbeat.updated_at) < row.updated_at - FORGET_AFTER))
                session.commit()
        except SQLAlchemyError as error:
            log.warning("could not record this consumer's heartbeat (the dashboard's lag tile goes stale): %s",
                        str(error).splitlines()[0])

    def leave(self) -> None:
        try:
            with Session(self.engine) as session:
                session.exec(delete(ConsumerHeartbeat).where(col(ConsumerHeartbeat.member) == self.member))
                session.commit()
        except SQLAlchemyError as error:
            log.warning("could not remove this consumer's heartbeat: %s", str(error).splitlines()[0])
