"""The sink: one transaction per batch, idempotent on news id, the stages see only newly inserted rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, func, select

from monitor.core import db
from monitor.stream.sink import NewsSink
from schemas.news import News


def row(news_id: str, offset: int) -> News:
    at = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    return News(id=news_id, source="wire", published_at=at, headline=f"headline {news_id}", tickers=["ACME"],
                kafka_topic="news", kafka_partition=0, kafka_offset=offset, sentiment="positive",
                p_negative=0.1, p_neutral=0.2, p_positive=0.7, score=0.6, confidence=0.7,
                entities=[{"text": "ACME", "type": "TICKER"}], model_version="m1", ingested_at=at, scored_at=at)


def count(engine: object) -> int:
    with Session(engine) as session:  # type: ignore[call-overload]
        return int(session.exec(select(func.count()).select_from(News)).one())


def test_rewriting_a_batch_inserts_nothing_and_stages_see_only_new_rows(db_url: str) -> None:
    engine = db.make_engine(db_url)
    in_transaction: list[list[str]] = []
    after_commit: list[list[str]] = []

    class Signals:
        def record(self, session: Session, rows: Sequence[News]) -> None:
            # runs inside the transaction: the rows are visible to it, uncommitted
            stored = session.exec(select(func.count()).select_from(News)).one()
            assert stored >= len(rows)
            in_transaction.append([r.id for r in rows])

    sink = NewsSink(engine, signals=Signals(), observers=[lambda rows: after_commit.append([r.id for r in rows])])
    first = sink.write([row("a", 0), row("b", 1), row("a", 2)])  # same id twice in one batch: first kept
    assert [r.id for r in first.inserted] == ["a", "b"]
    again = sink.write([row("a", 0), row("b", 1), row("c", 3)])  # a re-read batch plus one new message
    assert [r.id for r in again.inserted] == ["c"] and again.conflicts == [] and again.rejected == []
    assert in_transaction == [["a", "b"], ["c"]] and after_commit == in_transaction
    assert count(engine) == 3
    with Session(engine) as session:
        stored = session.get(News, "a")
        assert stored is not None and stored.kafka_offset == 0 and stored.entities[0]["text"] == "ACME"
        assert stored.published_at.tzinfo is not None
    engine.dispose()


def test_failing_batch_hook_rolls_the_batch_back(db_url: str) -> None:
    engine = db.make_engine(db_url)

    class Broken:
        def record(self, _session: Session, _rows: Sequence[News]) -> None:
            raise RuntimeError("signal update failed")

    with pytest.raises(RuntimeError):
        NewsSink(engine, signals=Broken()).write([row("a", 0)])
    assert count(engine) == 0
    engine.dispose()


def test_failing_after_commit_hook_keeps_the_rows(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = db.make_engine(db_url)

    class Broken:
        def on_commit(self, _rows: Sequence[News]) -> None:
            raise RuntimeError("alert evaluation failed")

    assert len(NewsSink(engine, alerts=Broken()).write([row("a", 0)]).inserted) == 1
    assert count(engine) == 1
    assert "after-commit alert stage failed" in caplog.text and "news[0]@0" in caplog.text
    engine.dispose()
