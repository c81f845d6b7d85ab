"""The broker restarts mid-stream: the consumer reconnects, rejoins and consumes what is produced afterwards.

The embedded broker (tansu, memory storage) keeps nothing across a restart: topics, committed offsets and
producer ids are gone, and offsets start again at 0. So the consumer must cope with a new broker under the old
address: its dead-letter producer restarts, and new stories at old offsets are new stories (the news id is the
idempotency key, not the Kafka coordinates).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.core import db
from monitor.stream.broker import EmbeddedBroker, create_topics
from tests.stream_helpers import (
    consumer_settings,
    encode,
    log_tail,
    malformed,
    news,
    publish,
    read_topic,
    row_counts,
    start_consume,
    stop_process,
    wait_for,
)

TOPICS = ("restart-news", "restart-news.dlq")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, on a fixed port it can be restarted on."""
    broker = EmbeddedBroker(log_file=tmp_path / "tansu.log").start()
    create_topics(broker.bootstrap, TOPICS, partitions=4)
    try:
        yield broker
    finally:
        broker.stop()


def with_malformed(start: int, count: int) -> list[tuple[bytes | None, bytes]]:
    """``count`` valid messages from id ``start``, and every tenth one malformed (for the dead-letter topic)."""
    return [(f"k{i}".encode(), malformed(i)[1] if i % 10 == 3 else encode(news(i)))
            for i in range(start, start + count)]


def test_consumer_survives_a_broker_restart(own_broker: EmbeddedBroker, sqlite_url: str, tiny_model_dir: Path,
                                            tmp_path: Path) -> None:
    # `finpulse consume` in its own process, as deployed (kafka-python also leaks a socket per connection the
    # stopped broker refuses; in a subprocess that is no concern of the test session's warning filters).
    db.upgrade(sqlite_url)
    settings = consumer_settings(own_broker.bootstrap, TOPICS, sqlite_url, tiny_model_dir)
    log_path = tmp_path / "consume.log"
    process = start_consume(settings, log_path)
    try:
        publish(own_broker.bootstrap, TOPICS[0], with_malformed(0, 100))
        wait_for(lambda: row_counts(sqlite_url)[0] >= 90, 90, "the first 90 stories")

        own_broker.stop()
        time.sleep(2.0)  # the consumer notices: fetches and heartbeats fail
        assert process.poll() is None, log_tail(log_path)
        own_broker.start()  # same port, empty: topics, offsets and producer ids are gone
        create_topics(own_broker.bootstrap, TOPICS, partitions=4)
        publish(own_broker.bootstrap, TOPICS[0], with_malformed(1000, 100))
        wait_for(lambda: row_counts(sqlite_url)[0] >= 180, 120, "the 90 stories produced after the restart")
        dead = read_topic(own_broker.bootstrap, TOPICS[1], expected=10)
        assert process.poll() is None, log_tail(log_path)
    finally:
        stop_process(process)
    assert process.returncode == 0, log_tail(log_path)
    assert row_counts(sqlite_url) == (180, 180)
    # The malformed ones produced after the restart reached the new broker's dead-letter topic.
    assert len(dead) == 10
    assert finpulse_tracebacks(log_path.read_text()) == []


def finpulse_tracebacks(log: str) -> list[str]:
    """The log lines that a traceback follows, except kafka-python's own: it logs a socket reset by the dying
    broker with its stack ("Error receiving network data closing socket"), which depends only on when the kill
    lands and is handled by the client itself."""
    lines = log.splitlines()
    return [previous for previous, line in zip(["", *lines], lines, strict=False)
            if line.startswith("Traceback") and " kafka." not in previous]
