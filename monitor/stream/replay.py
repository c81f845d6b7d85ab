"""``finpulse replay``: publishes news from a CSV or JSON-lines file as :class:`NewsIn` JSON messages.

Each message is keyed by its first ticker (so one company's news stays ordered on one partition), else by its
id. ``rate`` paces the stream in messages per second (0 = as fast as the broker takes them); ``restamp`` sets
``published_at`` to the send time, for live demos on old data.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from tqdm import tqdm

from monitor.core.errors import ConfigError, FinpulseError
from monitor.core.settings import Settings
from monitor.stream.news_file import ColumnMap, ReadStats, merge_same_instant, read_news
from schemas.news import NewsIn
from schemas.types import utcnow

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 60.0


@dataclass
class ReplayResult:
    sent: int
    bad: int
    merged: int
    seconds: float
    first_bad: str | None = None

    def line(self, path: Path, topic: str) -> str:
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        text = f"replayed {self.sent} messages from {path} to {topic} in {self.seconds:.1f} s ({rate:.0f} msg/s)"
        if self.merged:
            text += f"; merged {self.merged} rows repeating a news id (tickers united)"
        if self.bad:
            text += f"; skipped {self.bad} bad rows (first: {self.first_bad})"
        return text


def message_key(news: NewsIn) -> bytes:
    return (news.tickers[0] if news.tickers else news.id).encode("utf-8")


def message_value(news: NewsIn) -> bytes:
    return news.model_dump_json(exclude_none=True).encode("utf-8")


def make_producer(settings: Settings) -> Any:
    try:
        return KafkaProducer(**settings.kafka_client_config(), acks="all", linger_ms=10,
                             client_id="finpulse-replay")
    except KafkaTimeoutError:  # kafka-python 3 raises this when no bootstrap server answers
        raise ConfigError(f"no Kafka broker answered at {settings.kafka_bootstrap}; start one with "
                          "`finpulse broker` or set FINPULSE_KAFKA_BOOTSTRAP") from None


def replay(
    path: Path,
    settings: Settings,
    *,
    topic: str | None = None,
    columns: ColumnMap | None = None,
    rate: float = 0.0,
    limit: int | None = None,
    restamp: bool = False,
    skip_bad: bool = False,
    progress: bool | None = None,
) -> ReplayResult:
    """Publish the news of ``path``; returns what was sent. ``progress=None`` shows the bar on a terminal."""
    topic = topic or settings.kafka_topic
    if rate < 0:
        raise ConfigError(f"--rate must be 0 (as fast as possible) or positive, got {rate}")
    stats = ReadStats()
    rows = merge_same_instant(read_news(path, columns or ColumnMap(), skip_bad=skip_bad, restamp=restamp,
                                        stats=stats), stats)
    if limit is not None:
        rows = itertools.islice(rows, limit)
    failures: list[str] = []
    producer = make_producer(settings)
    started = time.monotonic()
    sent = 0
    try:
        bar_off = None if progress is None else not progress
        with tqdm(total=limit, unit="msg", desc=f"replay {path.name}", disable=bar_off) as bar:
            for row in rows:
                news = row.news.model_copy(update={"published_at": utcnow()}) if restamp else row.news
                if rate > 0:  # pace against the start so that sleeps' overshoot does not accumulate
                    delay = started + sent / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                future = producer.send(topic, key=message_key(news), value=message_value(news))
                future.add_errback(lambda error, line=row.line: failures.append(f"{path}:{line}: {error}"))
                sent += 1
                bar.update(1)
        producer.flush(timeout=SEND_TIMEOUT_S)
    except KafkaError as error:
        raise FinpulseError(f"publishing to {topic} failed ({type(error).__name__}: {error}); check the broker") \
            from None
    finally:
        producer.close(timeout=SEND_TIMEOUT_S)
    if failures:
        raise FinpulseError(f"{len(failures)} of {sent} messages were not acknowledged (first: {failures[0]}); "
                            "check the broker and topic")
    result = ReplayResult(sent, stats.bad, stats.merged, time.monotonic() - started, stats.first_bad)
    log.info(result.line(path, topic))
    return result
