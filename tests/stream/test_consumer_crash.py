"""`finpulse consume` killed with SIGKILL at random moments, restarted each time: nothing lost, nothing doubled."""

from __future__ import annotations

import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from monitor.core import db
from monitor.core.settings import Settings
from monitor.stream.broker import EmbeddedBroker, create_topics
from tests.conftest import make_scratch_pg
from tests.stream_helpers import (
    consumer_settings,
    encode,
    log_tail,
    malformed,
    news,
    publish,
    row_counts,
    start_consume,
    wait_for,
)

VALID, MALFORMED, KILLS = 600, 20, 3


@dataclass
class Target:
    """One consumer deployment under test: its database, topics and log."""

    db_url: str
    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def rows(self) -> int:
        return row_counts(self.db_url)[0]


@pytest.fixture
def crash_db_urls(sqlite_url: str, pg_available: bool) -> Iterator[list[str]]:
    """A migrated SQLite database, plus a migrated PostgreSQL one where PostgreSQL runs."""
    db.upgrade(sqlite_url)
    if not pg_available:
        yield [sqlite_url]
        return
    for pg_url in make_scratch_pg(pg_available):
        db.upgrade(pg_url)
        yield [sqlite_url, pg_url]


@pytest.mark.slow
def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    broker: EmbeddedBroker, crash_db_urls: list[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Each database gets its own topic and consumer; both run side by side so the restarts overlap in time."""
    rng = random.Random(20240301)
    messages: list[tuple[bytes | None, bytes]] = [(f"T{i % 11}".encode(), encode(news(i))) for i in range(VALID)]
    for j in range(MALFORMED):
        messages.insert(rng.randrange(len(messages)), (b"bad", malformed(j)[1]))
    targets = []
    for n, url in enumerate(crash_db_urls):
        topics = (f"crash-{uuid.uuid4().hex[:10]}", f"crash-{uuid.uuid4().hex[:10]}.dlq")
        create_topics(broker.bootstrap, topics, partitions=4)
        publish(broker.bootstrap, topics[0], messages)
        # Small batches so each run commits many times and a kill can land anywhere in the batch cycle.
        settings = consumer_settings(broker.bootstrap, topics, url, tiny_model_dir, batch_max_messages=20)
        targets.append(Target(url, settings, tmp_path / f"consume-{n}.log"))

    counts_at_kill: list[list[int]] = []
    try:
        for _ in range(KILLS):
            before = [target.rows() for target in targets]
            for target in targets:
                target.process = start_consume(target.settings, target.log_path)
            # Each consumer is killed as soon as it wrote its own first rows of this run, whatever the other one
            # does: waiting for them in turn let a fast consumer drain its whole topic while the other started.
            alive = list(zip(targets, before, strict=True))
            deadline = time.monotonic() + 180
            while alive:
                for target, rows_before in list(alive):
                    process = target.process
                    assert process is not None
                    assert process.poll() is None, f"exited early ({process.returncode}):\n{log_tail(target.log_path)}"
                    if target.rows() > rows_before:
                        time.sleep(rng.uniform(0.0, 0.2))  # a random moment of the batch cycle
                        process.kill()
                        process.wait(timeout=30)
                        alive.remove((target, rows_before))
                assert time.monotonic() < deadline, f"no rows within 180 s from {[t.db_url for t, _ in alive]}"
                time.sleep(0.1)
            counts_at_kill.append([target.rows() for target in targets])
    finally:
        for target in targets:
            if target.process is not None and target.process.poll() is None:
                target.process.kill()
                target.process.wait()
    assert all(count < VALID for count in counts_at_kill[-1]), f"drained before the last kill: {counts_at_kill}"

    drains = [start_consume(target.settings, target.log_path, "--idle-exit-s", "2") for target in targets]
    for target, process in zip(targets, drains, strict=True):
        assert process.wait(timeout=240) == 0, log_tail(target.log_path)
        rows, distinct = row_counts(target.db_url)
        assert (rows, distinct) == (VALID, VALID), f"kills at {counts_at_kill}\n{log_tail(target.log_path)}"


@pytest.mark.slow
def test_sigterm_finishes_and_commits_the_batch_then_exits_0(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    db.upgrade(sqlite_url)
    publish(broker.bootstrap, topics[0], [(f"T{i % 11}".encode(), encode(news(i))) for i in range(1000)])
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir, batch_max_messages=25)
    log_path = tmp_path / "consume.log"
    process = start_consume(settings, log_path)
    try:
        wait_for(lambda: row_counts(sqlite_url)[0] > 0 or process.poll() is not None, 120, "the first rows")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_tail(log_path)
    finally:
        if process.poll() is None:
            process.kill()
    log_text = log_path.read_text()
    assert "SIGTERM received" in log_text and "consumer stopped:" in log_text
    # Every batch written was also committed: the group's offsets add up to the rows stored.
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        committed = admin.list_group_offsets([settings.kafka_group_id])[settings.kafka_group_id]
    finally:
        admin.close()
    rows, distinct = row_counts(sqlite_url)
    assert rows == distinct == sum(meta.offset for meta in committed.values()) > 0
