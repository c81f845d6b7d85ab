"""Poison messages: each is dead-lettered with its stage and error, everything around it is stored once.

Real broker, real model, real SQLite and PostgreSQL. The faults are injected into the real components: a scorer
that raises on one chosen text, and a database rule (a SQLite trigger, a PostgreSQL CHECK constraint) that
refuses one chosen headline, so the row passes validation and fails only at the write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from monitor.core import db
from monitor.scoring.model_source import ModelSource
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer
from monitor.stream.dead_letter import HEADER_DETAIL, HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_STAGE
from schemas.news import News
from schemas.prediction import Prediction
from tests.stream_helpers import consumer_settings, encode, news, publish, read_topic

SCORE_POISON, DB_POISON = "POISON-SCORE", "POISON-DB"


class PoisonedScorer:
    """The real scorer, except that it raises on any batch holding the chosen text (as a tokenizer bug would)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def score(self, texts: Sequence[str]) -> list[Prediction]:
        if any(SCORE_POISON in t for t in texts):
            raise RuntimeError("tokenizer exploded on this text")
        return list(self.real.score(texts))


class PoisonedSource(ModelSource):
    def current(self) -> Any:
        return PoisonedScorer(super().current())


def refuse_headline_in_database(db_url: str) -> None:
    """A database rule that refuses one headline: the write fails for that row only, as a real constraint would."""
    engine = db.make_engine(db_url)
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text(
                f"CREATE TRIGGER refuse_poison BEFORE INSERT ON news WHEN NEW.headline LIKE '%{DB_POISON}%' "
                "BEGIN SELECT RAISE(ABORT, 'poison headline refused'); END"))
        else:
            connection.execute(text(
                f"ALTER TABLE news ADD CONSTRAINT refuse_poison CHECK (headline NOT LIKE '%{DB_POISON}%')"))
    engine.dispose()


def stored(db_url: str) -> dict[str, News]:
    engine = db.make_engine(db_url)
    with Session(engine) as session:
        rows = {row.id: row for row in session.exec(select(News)).all()}
    engine.dispose()
    return rows


def letters(bootstrap: str, topic: str, expected: int) -> dict[tuple[int, int], dict[str, str]]:
    out = {}
    for record in read_topic(bootstrap, topic, expected=expected):
        headers = {name: value.decode() for name, value in record.headers}
        out[(int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET]))] = headers
    return out


def test_poison_is_dead_lettered_with_its_stage_and_the_rest_is_stored_once(
    broker: EmbeddedBroker, topics: tuple[str, str], db_url: str, tiny_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    db.upgrade(db_url)
    refuse_headline_in_database(db_url)
    news_topic, dlq = topics
    poison = {  # message index -> (kind, stage) expected in the dead letter
        5: ("schema", "validate"), 12: ("schema", "validate"), 19: ("score_failed", "score"),
        26: ("db_rejected", "store"), 34: ("conflicting_duplicate", "validate|store"),
    }
    first = [news(i) for i in range(40)]
    first[5]["headline"] = "ACME beats\x00 estimates"  # NUL: PostgreSQL text cannot store it
    first[12]["published_at"] = "9999-12-31T23:59:59-14:00"  # overflows the de-duplication window arithmetic
    first[19]["headline"] = f"ACME {SCORE_POISON} quarter"
    first[26]["headline"] = f"ACME {DB_POISON} quarter"
    # news-33 again with other content: one partition keeps the order, so the first wins and this is the conflict
    # (found at validation when both are in one batch, at the write when they are not).
    first[34] = news(33, headline="ACME corrects its quarter")
    coords = publish(broker.bootstrap, news_topic, [(b"one-key", encode(item)) for item in first])

    settings = consumer_settings(broker.bootstrap, topics, db_url, tiny_model_dir, batch_max_messages=16)
    engine = db.make_engine(db_url)
    consumer = NewsConsumer(settings, engine=engine, scorers=PoisonedSource(settings, engine))
    consumer.max_messages = len(first)
    summary = consumer.run()
    assert summary.messages == 40 and summary.dead_lettered == 5 and summary.inserted == 35

    # A re-delivery of a stored message is silent; a stored id re-sent with a corrected headline is not.
    again = [news(1), news(2, headline="ACME misses estimates, corrected")]
    again_coords = publish(broker.bootstrap, news_topic, [(b"one-key", encode(item)) for item in again])
    consumer = NewsConsumer(settings, engine=engine, scorers=PoisonedSource(settings, engine), max_messages=2)
    summary = consumer.run()
    assert summary.messages == 2 and summary.dead_lettered == 1 and summary.inserted == 0
    engine.dispose()

    rows = stored(db_url)
    expected_ids = {item["id"] for i, item in enumerate(first) if i not in poison}
    assert set(rows) == expected_ids and len(rows) == 35
    assert rows["news-2"].headline == news(2)["headline"]  # first write wins; the correction is dead-lettered

    dead = letters(broker.bootstrap, dlq, expected=6)
    assert len(dead) == 6
    for index, (kind, stage) in poison.items():
        headers = dead[coords[index]]
        assert headers[HEADER_ERROR] == kind and headers[HEADER_STAGE] in stage.split("|"), headers
    assert "NUL" in dead[coords[5]][HEADER_DETAIL] and "published_at" in dead[coords[12]][HEADER_DETAIL]
    assert "tokenizer exploded" in dead[coords[19]][HEADER_DETAIL]
    assert "refuse" in dead[coords[26]][HEADER_DETAIL] or "poison" in dead[coords[26]][HEADER_DETAIL]
    correction = dead[again_coords[1]]
    assert (correction[HEADER_ERROR], correction[HEADER_STAGE]) == ("conflicting_duplicate", "store")
    assert "headline" in correction[HEADER_DETAIL]
    # Log lines name coordinates and ids, never message text.
    assert "quarter 4" not in caplog.text and "corrects its quarter" not in caplog.text
    assert f"{news_topic}[" in caplog.text
