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

**Isolation.** A row the database refuses for its data (a check constraint, a value out of range) must not stop
the stream: the batch is bisected into transactions of halves until the offending rows stand alone; those come
back in :attr:`FlushResult.rejected` (the consumer dead-letters them as ``db_rejected``) and every other row is
stored. A fault of the database itself (connection lost, disk full, shutdown; :mod:`monitor.core.db_faults`)
raises :class:`~monitor.core.db_faults.DatabaseUnavailable` instead, and the consumer retries the whole batch.

**Conflicting duplicates.** A stored id that arrives again with the same content is a re-delivery and a silent
no-op. With *other* content (a corrected headline), the first write still wins (signals and alerts already
used it), and the new message comes back in :attr:`FlushResult.conflicts` to be dead-lettered as
``conflicting_duplicate``, so the correction is kept, visible and replayable instead of silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Table, exc, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.core.db import session_scope
from monitor.core.db_faults import DatabaseUnavailable, describe, is_outage
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


DATA_ERRORS: tuple[type[BaseException], ...] = (
    exc.DataError, exc.IntegrityError, ValueError, ArithmeticError, UnicodeError)
"""Errors a different row would not have raised: the batch is bisected to find the rows that cause them."""
CONTENT_COLUMNS = ("source", "published_at", "headline", "body", "url", "language", "tickers")
"""What a producer sent; a stored id re-sent with any of these changed is a conflicting duplicate."""


@dataclass
class FlushResult:
    """What one flush did: rows stored now, rows the database refused (with why), and conflicting re-sends."""

    inserted: list[News] = field(default_factory=list)
    rejected: list[tuple[News, str]] = field(default_factory=list)
    conflicts: list[tuple[News, str]] = field(default_factory=list)


def first_per_id(rows: Sequence[News]) -> list[News]:
    """Rows in order, keeping the first of each news id (a producer may resend a story within one batch)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.id not in seen:
            seen.add(row.id)
            out.append(row)
    return out


def differing_fields(row: News, stored: dict[str, Any]) -> list[str]:
    """Content fields of ``row`` that differ from the stored row's (times compared as instants)."""
    return [name for name in CONTENT_COLUMNS if getattr(row, name) != stored[name]]


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

    def flush(self) -> FlushResult:
        """Write the collected rows. Already-stored ids are skipped (or reported as conflicts when their content
        differs); rows the database refuses for their data are isolated by bisection and reported, the rest are
        stored. Raises :class:`DatabaseUnavailable` when the database, not the data, failed (retry later)."""
        rows, self._rows = first_per_id(self._rows), []
        result = FlushResult()
        if rows:
            self._write_isolating(rows, result)
            if len(rows) > 1 and len(result.rejected) == len(rows):
                # Every row failed on its own: the fault is systemic (a trigger, a full column type), not data.
                raise DatabaseUnavailable(f"every row of the batch was refused ({result.rejected[0][1]})")
        for observer in self.observers:
            self._after_commit(f"observer {getattr(observer, '__name__', type(observer).__name__)}", observer,
                               result.inserted)
        if self.alerts is not None:
            self._after_commit("alert stage", self.alerts.on_commit, result.inserted)
        return result

    def _write_isolating(self, rows: list[News], result: FlushResult) -> None:
        """One transaction for ``rows``; on a data error, each half in its own, down to the offending rows."""
        try:
            inserted, conflicts = self._transaction(rows)
        except Exception as error:
            if is_outage(error):
                raise DatabaseUnavailable(describe(error)) from None
            if not isinstance(error, DATA_ERRORS) and not isinstance(error, exc.StatementError):
                raise
            if len(rows) == 1:
                where = f"{rows[0].kafka_topic}[{rows[0].kafka_partition}]@{rows[0].kafka_offset}"
                log.warning("%s (id %r): the database refused the row: %s", where, rows[0].id, describe(error))
                result.rejected.append((rows[0], describe(error)))
                return
            middle = len(rows) // 2
            self._write_isolating(rows[:middle], result)
            self._write_isolating(rows[middle:], result)
            return
        result.inserted += inserted
        result.conflicts += conflicts

    def _transaction(self, rows: list[News]) -> tuple[list[News], list[tuple[News, str]]]:
        with session_scope(self.engine) as session:
            inserted_ids = set(session.execute(self._statement, [row_values(row) for row in rows]).scalars().all())
            inserted = [row for row in rows if row.id in inserted_ids]
            if self.signals is not None:
                self.signals.record(session, inserted)
            skipped = [row for row in rows if row.id not in inserted_ids]
            conflicts = self._conflicts(session, skipped) if skipped else []
        return inserted, conflicts

    @staticmethod
    def _conflicts(session: Session, skipped: list[News]) -> list[tuple[News, str]]:
        """Skipped rows whose stored story has other content (a re-delivery of the same message is silent)."""
        columns = [NEWS_TABLE.c.id, *(NEWS_TABLE.c[name] for name in CONTENT_COLUMNS)]
        stored = {found.id: found._mapping for found in session.execute(
            select(*columns).where(NEWS_TABLE.c.id.in_([row.id for row in skipped])))}
        out = []
        for row in skipped:
            if row.id in stored and (changed := differing_fields(row, dict(stored[row.id]))):
                out.append((row, f"news id {row.id!r} is stored with other content (differs in: "
                                 f"{', '.join(changed)}); first write wins"))
        return out

    @staticmethod
    def _after_commit(name: str, stage: CommitObserver, rows: list[News]) -> None:
        try:
            stage(rows)
        except Exception:  # the rows are committed; a failing stage must not re-read the batch
            first = rows[0] if rows else None
            where = f" (first {first.kafka_topic}[{first.kafka_partition}]@{first.kafka_offset})" if first else ""
            log.exception("after-commit %s failed for %d rows%s", name, len(rows), where)

    def write(self, rows: Sequence[News]) -> FlushResult:
        """``add`` every row, then ``flush``."""
        for row in rows:
            self.add(row)
        return self.flush()
