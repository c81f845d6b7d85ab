"""Two `finpulse consume` processes in one group share a 4-partition topic and write every message once."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from monitor.core import db
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer, RunSummary
from tests.stream_helpers import consumer_settings, encode, log_tail, news, publish, row_counts, start_consume, wait_for

MESSAGES = 800
ASSIGNED = re.compile(r"partitions assigned: (.*)$", re.MULTILINE)
STOPPED = re.compile(r"consumer stopped: (\d+) messages .* partitions handled: (.*)$", re.MULTILINE)
PARTITION = re.compile(r"\[(\d+)\]")


def current_assignment(log_path: Path) -> set[int]:
    """Partitions of the newest 'partitions assigned' line (eager rebalances announce the full set)."""
    found = ASSIGNED.findall(log_path.read_text()) if log_path.exists() else []
    return {int(p) for p in PARTITION.findall(found[-1])} if found else set()


@pytest.mark.slow
def test_two_consumers_share_partitions_and_write_each_message_once(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    db.upgrade(sqlite_url)
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir, batch_max_messages=25)
    logs = [tmp_path / "consumer-a.log", tmp_path / "consumer-b.log"]
    processes = [start_consume(settings, path) for path in logs]
    try:
        # Publish only once the group settled on two members, so that both get work.
        def settled() -> bool:
            a, b = (current_assignment(path) for path in logs)
            return bool(a) and bool(b) and not a & b and a | b == {0, 1, 2, 3}

        wait_for(settled, 120, "both consumers to share the 4 partitions")
        assignments = [current_assignment(path) for path in logs]
        publish(broker.bootstrap, topics[0], [(f"T{i % 17}".encode(), encode(news(i))) for i in range(MESSAGES)])
        wait_for(lambda: row_counts(sqlite_url)[0] >= MESSAGES, 180, f"{MESSAGES} rows")
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process, path in zip(processes, logs, strict=True):
            assert process.wait(timeout=60) == 0, log_tail(path)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    handled = []
    for path in logs:
        match = STOPPED.search(path.read_text())
        assert match, log_tail(path)
        handled.append((int(match.group(1)), {int(p) for p in PARTITION.findall(match.group(2))}))
    assert all(count > 0 for count, _ in handled), handled
    assert handled[0][1] | handled[1][1] == {0, 1, 2, 3}, (handled, assignments)
    assert sum(count for count, _ in handled) >= MESSAGES
    assert row_counts(sqlite_url) == (MESSAGES, MESSAGES)


@pytest.mark.slow
def test_member_joining_mid_batch_makes_the_other_abandon_and_reread(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rebalance while records are collected but unprocessed: they are dropped uncommitted and read again.

    kafka-python 3.0 keeps the fetch position of a partition that stays with the member, so without the
    consumer's seek-back the dropped records of that partition would be skipped (lost).
    """
    db.upgrade(sqlite_url)
    publish(broker.bootstrap, topics[0], [(f"T{i % 17}".encode(), encode(news(i))) for i in range(MESSAGES)])
    # A batch that stays open for seconds, so the rebalance lands while A holds unprocessed records.
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir, batch_max_messages=5000,
                                 batch_max_wait_ms=5000)
    caplog.set_level(logging.INFO, logger="monitor")
    consumers: list[NewsConsumer] = []
    summaries: list[RunSummary] = []

    def run_member() -> None:
        consumer = NewsConsumer(settings)
        consumers.append(consumer)
        summaries.append(consumer.run())

    threads = [threading.Thread(target=run_member) for _ in range(2)]
    try:
        threads[0].start()
        wait_for(lambda: "partitions assigned" in caplog.text, 60, "the first member to get partitions")
        time.sleep(0.5)  # let it collect records
        threads[1].start()
        wait_for(lambda: row_counts(sqlite_url)[0] >= MESSAGES, 180, f"{MESSAGES} rows")
    finally:
        for consumer in consumers:
            consumer.stop()
        for thread in threads:
            thread.join(timeout=120)
    assert "rebalance: abandoned uncommitted records" in caplog.text
    assert row_counts(sqlite_url) == (MESSAGES, MESSAGES)
    assert len(summaries) == 2 and sum(s.inserted for s in summaries) == MESSAGES, summaries
