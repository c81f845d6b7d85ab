"""Helpers of the streaming-core tests: messages, publishing, reading topics back, consumer settings and env."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import text

from monitor.core import db
from monitor.core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
MAX_MESSAGE_BYTES = 4096

# Short group timings: tansu completes a join in about half the session timeout.
FAST_GROUP = {"kafka_session_timeout_ms": 2000, "kafka_max_poll_interval_ms": 20_000, "batch_max_wait_ms": 100,
              "batch_max_messages": 50, "stats_interval_s": 1.0, "max_message_bytes": MAX_MESSAGE_BYTES,
              # consumers' health files go here, not into the checkout's var/health
              "health_dir": Path(tempfile.gettempdir()) / "finpulse-test-health"}


def news(i: int, **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"news-{i}", "source": "test-wire", "published_at": f"2024-03-01T09:{i % 60:02d}:00+00:00",
        "headline": f"ACME {'beats' if i % 2 else 'misses'} estimates in quarter {i}",
        "tickers": ["ACME", f"T{i % 7}"],
    }
    item.update(overrides)
    return item


def encode(item: dict[str, Any]) -> bytes:
    return json.dumps(item).encode()


def malformed(i: int) -> tuple[str, bytes]:
    """The i-th malformed message (cycling through the kinds) and the rejection kind expected for it."""
    good = news(100_000 + i)
    cases: list[tuple[str, bytes]] = [
        ("not_utf8", b"\xff\xfe" + encode(good)),
        ("not_json", b"{this is not json"),
        ("not_object", json.dumps([good]).encode()),
        ("schema", encode({k: v for k, v in good.items() if k != "headline"})),
        ("schema", encode({**good, "published_at": "2024-03-01T09:30:00"})),
        ("oversized", encode({**good, "body": "x" * (MAX_MESSAGE_BYTES + 10)})),
        ("schema", encode({**good, "tickers": ["not a ticker"]})),
        ("schema", encode({**good, "surprise": 1})),
        ("empty", b""),
        ("schema", encode({**good, "url": "ftp://example.com"})),
    ]
    return cases[i % len(cases)]


def publish(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Send every (key, value); returns each message's (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=1 << 20)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in values]
        producer.flush(timeout=60)
        return [(meta.partition, meta.offset) for meta in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close(timeout=10)


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` (all partitions, from the start); waits until ``expected`` arrived."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(4)])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            if len(records) >= expected:
                # one more short poll so extra (unexpected) records show up in the assertion
                for batch in consumer.poll(timeout_ms=300).values():
                    records.extend(batch)
                break
        return records
    finally:
        consumer.close(autocommit=False)


def consumer_settings(bootstrap: str, topics: tuple[str, str], db_url: str, model_dir: Path,
                      **overrides: Any) -> Settings:
    news_topic, dlq = topics
    return load_settings(kafka_bootstrap=bootstrap, kafka_topic=news_topic, kafka_dead_letter_topic=dlq,
                         kafka_group_id=f"group-{news_topic}", database_url=db_url, model_dir=model_dir,
                         device="cpu", **{**FAST_GROUP, **overrides})


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `finpulse` subprocess use ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINPULSE_")}
    fields = ["kafka_bootstrap", "kafka_topic", "kafka_dead_letter_topic", "kafka_group_id", "database_url",
              "model_dir", "device", *FAST_GROUP]
    for name in fields:
        env[f"FINPULSE_{name.upper()}"] = str(getattr(settings, name))
    env["FINPULSE_CONSUMER_PROCESSES"] = "1"  # one member per subprocess: the tests kill and count members
    return env


def start_consume(settings: Settings, log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """`finpulse consume` in a subprocess, its output appended to ``log_path``."""
    with log_path.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "monitor.app", "consume", *args], cwd=REPO,
                                env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT)


def row_counts(db_url: str) -> tuple[int, int]:
    """(rows, distinct ids) of the news table."""
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT COUNT(*), COUNT(DISTINCT id) FROM news")).one()
            return int(row[0]), int(row[1])
    finally:
        engine.dispose()


def wait_for(condition: Any, timeout_s: float, what: str, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM (the consumer finishes its batch and exits 0), then SIGKILL if it does not end in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
