"""The database sink: a batch of scored rows is written in one transaction, idempotently; this is the write path.

Modelled on quix-streams' ``BatchingSink``: :meth:`NewsSink.add` collects rows and :meth:`NewsSink.flush`
writes them. The insert is ``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id`` (the SQLite and PostgreSQL
dialect inserts), so re-reading a batch after a crash writes no duplicate, and ``RETURNING`` tells exactly which
rows this batch added. Only those rows go on, through the stages the sink calls by name:

1. **signals** (:class:`monitor.signals.buckets.SignalWriter`), inside the same transaction: near-duplicate
   marking and per-entity buckets commit with the rows or not at all;
2. **observers**, after the commit: a documented extension point for code that watches the stream without being
   part of it (``finpulse bench`` records commit times through it);
3. **alerts** (:class:`monitor.alerts.evaluator.AlertEvaluator`), after the commit: at most once per row; if the
   process dies between the commit and this stage, the re-read batch inserts nothing new and the stage is not
   called again for those rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from monitor.core.db import session_scope
from monitor.core.errors import FinpulseError
from schemas.news import News

log = logging.getLogger(__name__)

CommitObserver = Callable[[Sequence[News]], None]
"""Called with the newly stored rows right after each batch committed; an exception is logged, never raised."""


class SignalStage(Protocol):
    def record(self, session: Session, rows: Sequence[News]) -> None:
        """Update derived data in the sink's transaction (an exception rolls the batch back)."""


class AlertStage(Protocol):
    def on_commit(self, rows: Sequence[News]) -> None:
        """React to committed rows (an exception is logged: the rows are stored and stay stored)."""

NEWS_TABLE: Table = News.__table__  # type: ignore[attr-defined]


class SinkConflictError(FinpulseError):
    """A row clashes with a stored row on something other than its news id."""


def first_per_id(rows: Sequence[News]) -> list[News]:
    """Rows in order, keeping the first of each news id (a producer may resend a story within one batch)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.id not in seen:
            seen.add(row.id)
            out.append(row)
    return out


def upsert_statement(dialect: str) -> Any:
    """``INSERT INTO news ... ON CONFLICT (id) DO NOTHING RETURNING id`` for the engine's dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:
        raise FinpulseError(f"database dialect {dialect!r} is not supported; use SQLite or PostgreSQL")
    return insert(NEWS_TABLE).on_conflict_do_nothing(index_elements=["id"]).returning(NEWS_TABLE.c.id)


def row_values(row: News) -> dict[str, Any]:
    return {column.name: getattr(row, column.name) for column in NEWS_TABLE.columns}


class NewsSink:
    """Collects scored rows and writes each batch in one transaction."""

    def __init__(self, engine: Engine, *, signals: SignalStage | None = None, alerts: AlertStage | None = None,
                 observers: Sequence[CommitObserver] = ()) -> None:
        self.engine = engine
        self.signals = signals
        self.alerts = alerts
        self.observers = list(observers)
        self._statement = upsert_statement(engine.dialect.name)
        self._rows: list[News] = []

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, row: News) -> None:
        self._rows.append(row)

    def discard(self) -> None:
        """Forget the collected rows (the batch is abandoned and will be re-read)."""
        self._rows = []

    def flush(self) -> list[News]:
        """Write the collected rows; return those newly inserted (already-stored ids are skipped)."""
        rows, self._rows = first_per_id(self._rows), []
        if not rows:
            return []
        try:
            with session_scope(self.engine) as session:
                result = session.execute(self._statement, [row_values(row) for row in rows])
                inserted_ids = set(result.scalars().all())
                inserted = [row for row in rows if row.id in inserted_ids]
                if self.signals is not None:
                    self.signals.record(session, inserted)
        except IntegrityError as error:
            # ON CONFLICT (id) covers re-reads. Another unique clash means the same Kafka coordinates arrive
            # with a new id: the topic was recreated (the embedded broker keeps topics in memory only).
            first = rows[0]
            raise SinkConflictError(
                f"batch starting at {first.kafka_topic}[{first.kafka_partition}]@{first.kafka_offset} clashes "
                f"with stored rows ({type(error.orig).__name__}); the topic was probably recreated with offsets "
                "starting again: use a fresh database or a new topic name"
            ) from None
        for observer in self.observers:
            self._after_commit(f"observer {getattr(observer, '__name__', type(observer).__name__)}", observer,
                               inserted)
        if self.alerts is not None:
            self._after_commit("alert stage", self.alerts.on_commit, inserted)
        return inserted

    @staticmethod
    def _after_commit(name: str, stage: CommitObserver, rows: list[News]) -> None:
        try:
            stage(rows)
        except Exception:  # the rows are committed; a failing stage must not re-read the batch
            first = rows[0] if rows else None
            where = f" (first {first.kafka_topic}[{first.kafka_partition}]@{first.kafka_offset})" if first else ""
            log.exception("after-commit %s failed for %d rows%s", name, len(rows), where)

    def write(self, rows: Sequence[News]) -> list[News]:
        """``add`` every row, then ``flush``."""
        for row in rows:
            self.add(row)
        return self.flush()
