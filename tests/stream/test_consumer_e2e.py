"""The consumer in-process against the real broker, a real tiny model and both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from monitor.core import db
from monitor.core.errors import ConfigError, DatabaseNotMigratedError
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer
from monitor.stream.dead_letter import (
    HEADER_DETAIL,
    HEADER_ERROR,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_TIMESTAMP,
    HEADER_TOPIC,
)
from schemas.news import News
from schemas.registry import ModelVersion
from tests.stream_helpers import consumer_settings, encode, malformed, news, publish, read_topic

TOTAL, BAD_EVERY = 1000, 20  # every 20th message is malformed: 50 of 1000


@pytest.mark.slow
def test_every_message_lands_once_in_db_or_dead_letter_topic(
    broker: EmbeddedBroker, topics: tuple[str, str], db_url: str, tiny_model_dir: Path
) -> None:
    news_topic, dlq = topics
    messages: list[tuple[bytes | None, bytes]] = []
    expected_kind: dict[int, str] = {}
    for i in range(TOTAL):
        if i % BAD_EVERY == 7:
            kind, value = malformed(i // BAD_EVERY)
            expected_kind[i] = kind
            messages.append((f"bad-{i}".encode(), value))
        else:
            messages.append((f"T{i % 13}".encode(), encode(news(i))))
    coords = publish(broker.bootstrap, news_topic, messages)
    assert len(expected_kind) == 50 and len({p for p, _ in coords}) == 4

    settings = consumer_settings(broker.bootstrap, topics, db_url, tiny_model_dir)
    summary = NewsConsumer(settings, max_messages=TOTAL).run()
    assert summary.messages == TOTAL and summary.dead_lettered == 50 and summary.inserted == TOTAL - 50

    engine = db.make_engine(db_url)
    with Session(engine) as session:
        rows = {row.id: row for row in session.exec(select(News)).all()}
    engine.dispose()
    valid = [i for i in range(TOTAL) if i not in expected_kind]
    assert sorted(rows) == sorted(f"news-{i}" for i in valid)
    for i in valid:
        row = rows[f"news-{i}"]
        assert (row.kafka_topic, row.kafka_partition, row.kafka_offset) == (news_topic, *coords[i])
        assert row.model_version == "tiny-0" and row.sentiment in ("negative", "neutral", "positive")
        assert abs(row.p_negative + row.p_neutral + row.p_positive - 1) < 1e-3
        assert row.tickers == ["ACME", f"T{i % 7}"] and row.ingested_at.tzinfo is not None

    dead = read_topic(broker.bootstrap, dlq, expected=50)
    assert len(dead) == 50
    by_source = {}
    for record in dead:
        headers = {name: value.decode() for name, value in record.headers}
        assert headers[HEADER_TOPIC] == news_topic and headers[HEADER_DETAIL] and int(headers[HEADER_TIMESTAMP]) > 0
        by_source[(int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET]))] = (record, headers)
    for i, kind in expected_kind.items():
        record, headers = by_source[coords[i]]
        assert headers[HEADER_ERROR] == kind
        assert record.value == messages[i][1] and record.key == messages[i][0]


def test_refuses_unmigrated_database(broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str,
                                     tiny_model_dir: Path) -> None:
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir)
    with pytest.raises(DatabaseNotMigratedError, match="finpulse db upgrade"):
        NewsConsumer(settings)


def test_needs_a_model(broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tmp_path: Path) -> None:
    db.upgrade(sqlite_url)
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tmp_path).model_copy(update={"model_dir": None})
    with pytest.raises(ConfigError, match="no model to serve"):
        NewsConsumer(settings)


def test_serves_the_registry_champion_when_no_model_dir_is_set(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path
) -> None:
    db.upgrade(sqlite_url)
    engine = db.make_engine(sqlite_url)
    with Session(engine) as session:
        session.add(ModelVersion(version="old", path="/nowhere", base_model="x", status="retired"))
        session.add(ModelVersion(version="tiny-0", path=str(tiny_model_dir), base_model="x", status="champion"))
        session.commit()
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir).model_copy(
        update={"model_dir": None})
    consumer = NewsConsumer(settings, engine=engine)
    assert consumer.scorers.current().model_dir == tiny_model_dir
    engine.dispose()


def test_idle_exit_waits_for_the_group_join(broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str,
                                            tiny_model_dir: Path) -> None:
    """A join takes about half the session timeout (1 s here): an idle limit shorter than that must not stop a
    consumer that has not been given its partitions yet (it used to exit with nothing consumed)."""
    db.upgrade(sqlite_url)
    publish(broker.bootstrap, topics[0], [(b"k", encode(news(i))) for i in range(30)])
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir)
    summary = NewsConsumer(settings, idle_exit_s=0.3).run()
    assert summary.messages == 30 and summary.inserted == 30
