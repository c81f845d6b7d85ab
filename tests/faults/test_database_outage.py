"""The database goes away mid-stream, or is not there at start-up: the consumer waits, then goes on; 0 lost, 0 doubled.

A private PostgreSQL cluster (tests/pg_cluster.py) is stopped with ``pg_ctl -m immediate`` (a crash, as far as
the server is concerned) while the consumer runs, and started again 15 s later.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.core import db
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer
from monitor.stream.stats import RunSummary
from tests.pg_cluster import PrivateCluster, unavailable_reason
from tests.stream_helpers import (
    REPO,
    consumer_settings,
    encode,
    log_tail,
    news,
    publish,
    read_topic,
    row_counts,
    settings_env,
    start_consume,
    stop_process,
    wait_for,
)

OUTAGE_S = 15.0
TOTAL = 240


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    private = PrivateCluster()
    private.start()
    db.upgrade(private.url)
    try:
        yield private
    finally:
        db.dispose_engines()
        private.destroy()


def test_consumer_rides_out_a_database_outage(broker: EmbeddedBroker, topics: tuple[str, str],
                                              cluster: PrivateCluster, tiny_model_dir: Path) -> None:
    settings = consumer_settings(broker.bootstrap, topics, cluster.url, tiny_model_dir, retry_max_backoff_s=2.0)
    consumer = NewsConsumer(settings)
    outcome: list[RunSummary | BaseException] = []

    def run() -> None:
        try:
            outcome.append(consumer.run())
        except BaseException as error:  # noqa: BLE001 - the assertion below reports it
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    statuses: set[str] = set()
    # A steady producer: 240 messages over about 24 s, so messages arrive before, during and after the outage.
    producer = threading.Thread(target=lambda: [
        (publish(broker.bootstrap, topics[0], [(f"k{i}".encode(), encode(news(i))) for i in range(n, n + 10)]),
         time.sleep(1.0)) for n in range(0, TOTAL, 10)], daemon=True)
    producer.start()
    wait_for(lambda: row_counts(cluster.url)[0] >= 30, 60, "rows before the outage")
    cluster.stop("immediate")
    down_until = time.monotonic() + OUTAGE_S
    while time.monotonic() < down_until:
        statuses.add(consumer.health.status)
        assert thread.is_alive(), f"the consumer exited during the outage: {outcome}"
        time.sleep(0.2)
    cluster.start()
    producer.join(timeout=60)
    wait_for(lambda: row_counts(cluster.url)[0] >= TOTAL, 90, "every message stored after the outage")
    assert thread.is_alive(), f"the consumer exited: {outcome}"
    consumer.stop()
    thread.join(timeout=60)
    assert outcome and isinstance(outcome[0], RunSummary), outcome
    assert "database_retrying" in statuses
    assert row_counts(cluster.url) == (TOTAL, TOTAL)  # 0 lost, 0 duplicated
    assert outcome[0].dead_lettered == 0 and read_topic(broker.bootstrap, topics[1], expected=0, timeout_s=1) == []


def test_consume_waits_for_a_database_that_is_down_at_start(broker: EmbeddedBroker, topics: tuple[str, str],
                                                            cluster: PrivateCluster, tiny_model_dir: Path,
                                                            tmp_path: Path) -> None:
    cluster.stop("fast")
    settings = consumer_settings(broker.bootstrap, topics, cluster.url, tiny_model_dir, retry_max_backoff_s=1.0)
    log_path = tmp_path / "consume.log"
    process = start_consume(settings, log_path)
    try:
        wait_for(lambda: "waiting for it at start-up" in log_tail(log_path), 60, "the start-up wait line")
        assert process.poll() is None and "Traceback" not in log_path.read_text()
        cluster.start()
        publish(broker.bootstrap, topics[0], [(b"k", encode(news(i))) for i in range(20)])
        wait_for(lambda: row_counts(cluster.url)[0] >= 20, 90, "rows once the database is up")
    finally:
        stop_process(process)
    text = log_path.read_text()
    assert process.returncode == 0, log_tail(log_path)
    assert "Traceback" not in text and "database back after" in text
    assert row_counts(cluster.url) == (20, 20)


def test_database_commands_print_one_line_when_it_is_unreachable(cluster: PrivateCluster) -> None:
    cluster.stop("fast")
    env_url = cluster.url.replace("postgres@", "postgres:hunter2@")
    for command in (["db", "upgrade"], ["db", "current"]):
        done = subprocess.run([sys.executable, "-m", "monitor.app", *command], env={"FINPULSE_DATABASE_URL": env_url},
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
        lines = (done.stdout + done.stderr).strip().splitlines()
        assert done.returncode == 75 and len(lines) == 1, lines
        assert "is unreachable" in lines[0] and "FINPULSE_DATABASE_URL" in lines[0] and "hunter2" not in lines[0]


def test_consume_gives_up_with_one_line_after_the_outage_deadline(broker: EmbeddedBroker, topics: tuple[str, str],
                                                                  cluster: PrivateCluster, tiny_model_dir: Path,
                                                                  tmp_path: Path) -> None:
    cluster.stop("fast")
    settings = consumer_settings(broker.bootstrap, topics, cluster.url, tiny_model_dir, retry_max_backoff_s=0.5,
                                 outage_deadline_s=3.0)
    env = {**settings_env(settings), "FINPULSE_OUTAGE_DEADLINE_S": "3", "FINPULSE_RETRY_MAX_BACKOFF_S": "0.5"}
    done = subprocess.run([sys.executable, "-m", "monitor.app", "consume"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 75, done.stderr[-2000:]
    assert len(errors) == 1 and "FINPULSE_OUTAGE_DEADLINE_S=3" in errors[0] and "re-read" in errors[0]
    assert "Traceback" not in done.stderr
