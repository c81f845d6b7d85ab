"""The database sink: a batch of scored rows is written in one transaction, idempotently.

Modelled on quix-streams' ``BatchingSink``: :meth:`NewsSink.add` collects rows and :meth:`NewsSink.flush`
writes them. The insert is ``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id`` (the SQLite and PostgreSQL
dialect inserts), so re-reading a batch after a crash writes no duplicate, and ``RETURNING`` tells exactly which
rows this batch added: only those reach the batch hooks (same transaction) and after-commit hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from monitor.db import session_scope
from monitor.errors import FinpulseError
from monitor.hooks import AfterCommitHook, BatchHook
from schemas.news import News

log = logging.getLogger(__name__)

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

    def __init__(
        self,
        engine: Engine,
        batch_hooks: Sequence[BatchHook] = (),
        after_commit_hooks: Sequence[AfterCommitHook] = (),
    ) -> None:
        self.engine = engine
        self.batch_hooks = list(batch_hooks)
        self.after_commit_hooks = list(after_commit_hooks)
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
                for hook in self.batch_hooks:
                    hook(session, inserted)
        except IntegrityError as error:
            # ON CONFLICT (id) covers re-reads. Another unique clash means the same Kafka coordinates arrive
            # with a new id: the topic was recreated (the embedded broker keeps topics in memory only).
            first = rows[0]
            raise SinkConflictError(
                f"batch starting at {first.kafka_topic}[{first.kafka_partition}]@{first.kafka_offset} clashes "
                f"with stored rows ({type(error.orig).__name__}); the topic was probably recreated with offsets "
                "starting again: use a fresh database or a new topic name"
            ) from None
        for after_commit in self.after_commit_hooks:
            try:
                after_commit(inserted)
            except Exception:  # the rows are committed; a failing hook must not re-read the batch
                log.exception("after-commit hook %s failed for %d rows", getattr(after_commit, "__name__",
                                                                                 after_commit), len(inserted))
        return inserted

    def write(self, rows: Sequence[News]) -> list[News]:
        """``add`` every row, then ``flush``."""
        for row in rows:
            self.add(row)
        return self.flush()
