"""Each running consumer publishes its lag to ``consumer_heartbeat`` (the lag tile) and removes it on exit."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from sqlmodel import Session, select

from monitor.core import db
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer
from monitor.stream.heartbeat import Heartbeat
from monitor.stream.stats import consumer_lag
from schemas.consumers import ConsumerHeartbeat
from schemas.types import utcnow
from tests.stream_helpers import consumer_settings, encode, news, publish, wait_for

MESSAGES = 120


def _rows(db_url: str) -> list[ConsumerHeartbeat]:
    engine = db.make_engine(db_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(ConsumerHeartbeat)).all())
    finally:
        engine.dispose()


def test_consumer_reports_lag_while_running_and_removes_its_row_on_exit(
    broker: EmbeddedBroker, topics: tuple[str, str], db_url: str, tiny_model_dir: Path
) -> None:
    news_topic, _ = topics
    publish(broker.bootstrap, news_topic, [(f"T{i % 5}".encode(), encode(news(i))) for i in range(MESSAGES)])
    settings = consumer_settings(broker.bootstrap, topics, db_url, tiny_model_dir)
    consumer = NewsConsumer(settings)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        # Drained: the newest report says nothing is left, on every partition of the topic.
        wait_for(lambda: any(row.lag == 0 and row.model_version == "tiny-0" for row in _rows(db_url)), 60,
                 "a heartbeat with lag 0 after the topic was drained")
        [row] = _rows(db_url)
        assert row.group_id == settings.kafka_group_id and row.topic == news_topic
        assert row.partitions == [0, 1, 2, 3]
        assert row.updated_at >= row.started_at
        consumer.stop()
        thread.join(30)
        assert not thread.is_alive()
        assert _rows(db_url) == []  # a clean exit leaves no stale consumer behind
    finally:
        consumer.stop()
        thread.join(30)


def test_beats_replace_one_row_per_member_and_leave_deletes_it(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        with Session(engine) as session:  # a consumer that crashed two days ago
            session.add(ConsumerHeartbeat(member="gone:9", group_id="group-a", topic="news", lag=7,
                                          updated_at=utcnow() - timedelta(days=2)))
            session.commit()
        first = Heartbeat(engine, "group-a", "news", member="host:1")
        other = Heartbeat(engine, "group-a", "news", member="host:2")
        first.beat(lag=500, messages_per_s=10.0, partitions=[2, 0], model_version="v1")
        other.beat(lag=None, messages_per_s=0.0, partitions=[1], model_version=None)
        # The health state rides along: a long detail fits the column, without the NUL PostgreSQL would refuse.
        first.beat(lag=20, messages_per_s=42.5, partitions=[0, 2], model_version="v2", status="model_refused",
                   detail="champion v3 refused: " + "x" * 600 + "\0")
        rows = {row.member: row for row in _rows(db_url)}
        assert set(rows) == {"host:1", "host:2"}  # the crashed consumer's day-old row was pruned
        assert (rows["host:1"].lag, rows["host:1"].messages_per_s, rows["host:1"].partitions) == (20, 42.5, [0, 2])
        assert rows["host:1"].model_version == "v2" and rows["host:2"].lag is None
        assert rows["host:1"].status == "model_refused" and rows["host:1"].detail is not None
        assert rows["host:1"].detail.startswith("champion v3 refused: xxx") and len(rows["host:1"].detail) == 500
        assert (rows["host:2"].status, rows["host:2"].detail) == ("ok", None)
        first.beat(lag=0, messages_per_s=1.0, partitions=[0], model_version="v2")  # recovered: back to ok
        assert {row.member: (row.status, row.detail) for row in _rows(db_url)}["host:1"] == ("ok", None)
        first.leave()
        assert [row.member for row in _rows(db_url)] == ["host:2"]
    finally:
        engine.dispose()


def test_consumer_lag_is_end_offset_minus_position_over_the_assignment(
    broker: EmbeddedBroker, topics: tuple[str, str]
) -> None:
    news_topic, _ = topics
    # One record per produce request: tansu answers ListOffsets(latest) with the last *batch's* base offset + 1,
    # so batched records are only counted once a fetch reports the high watermark (which consumer_lag also reads).
    coords = [publish(broker.bootstrap, news_topic, [(f"T{i % 5}".encode(), encode(news(i)))])[0] for i in range(40)]
    reader = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                           auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        assert consumer_lag(reader) is None  # nothing assigned yet: unknown, not 0
        partitions = sorted({partition for partition, _ in coords})
        reader.assign([TopicPartition(news_topic, p) for p in partitions])
        reader.seek_to_beginning()
        assert consumer_lag(reader) == 40
        seen = 0
        while not seen:
            seen = sum(len(batch) for batch in reader.poll(timeout_ms=2000, max_records=10).values())
        assert consumer_lag(reader) == 40 - seen
        while seen < 40:
            seen += sum(len(batch) for batch in reader.poll(timeout_ms=2000).values())
        assert consumer_lag(reader) == 0
    finally:
        reader.close()
