"""The benchmark's messages: the StockNet tweet stream when ``../shared/data`` has it, else the bundled corpus.

The StockNet file is read in time order (rows repeating a tweet for several tickers merged, as ``finpulse replay``
does); the bundled sample corpus (524 headlines) is cycled. Ids get a per-run, per-phase prefix so that phases
never collide in one database (PostgreSQL runs share it) and a cycled corpus still has unique ids.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from monitor.core.errors import DataError
from monitor.stream.news_file import ColumnMap, merge_same_instant, read_news
from monitor.stream.replay import message_key, message_value
from schemas.news import NewsIn

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
STOCKNET = Path("data") / "stocknet_stream" / "stocknet_tweets_stream.csv"
SAMPLE_FILES = ("train.jsonl", "validation.jsonl")


@dataclass(frozen=True)
class DataSource:
    name: str
    paths: tuple[Path, ...]

    def describe(self) -> str:
        return f"{self.name} ({', '.join(str(p) for p in self.paths)})"


def find_source(repo: Path = REPO) -> DataSource:
    """``<repo>/../shared/data/stocknet_stream/...`` when present, else ``finetune/sample_data/*.jsonl``."""
    stocknet = repo.parent / "shared" / STOCKNET
    if stocknet.is_file():
        return DataSource("stocknet", (stocknet,))
    samples = tuple(repo / "finetune" / "sample_data" / name for name in SAMPLE_FILES)
    present = tuple(p for p in samples if p.is_file())
    if not present:
        raise DataError(f"no benchmark data: neither {stocknet} nor {samples[0]} exists; run from a finpulse checkout")
    return DataSource("sample-corpus", present)


def _read(source: DataSource) -> Iterator[NewsIn]:
    for path in source.paths:
        for row in merge_same_instant(read_news(path, ColumnMap(), skip_bad=True)):
            yield row.news


def load_messages(source: DataSource, count: int, prefix: str) -> list[NewsIn]:
    """``count`` messages in source order, cycling the source if it is shorter, ids prefixed ``prefix-``."""
    out: list[NewsIn] = []
    for cycle in itertools.count():
        before = len(out)
        for news in _read(source):
            if len(out) >= count:
                return out
            tag = f"{prefix}-{cycle}-" if cycle else f"{prefix}-"
            out.append(news.model_copy(update={"id": (tag + news.id)[:200]}))
        if len(out) == before:
            raise DataError(f"{source.describe()}: no valid news rows")
    return out


def texts_of(messages: list[NewsIn], body_max_chars: int) -> list[str]:
    return [news.model_text(body_max_chars) for news in messages]


def make_producer(bootstrap: str, **config: Any) -> Any:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="finpulse-bench", **config)


def publish_all(bootstrap: str, topic: str, messages: list[NewsIn]) -> float:
    """Publish every message as fast as the broker takes them (acknowledged); returns seconds spent."""
    started = time.monotonic()
    producer = make_producer(bootstrap, linger_ms=20, batch_size=256 * 1024)
    try:
        futures = [producer.send(topic, key=message_key(m), value=message_value(m)) for m in messages]
        producer.flush(timeout=120)
        for future in futures:
            future.get(timeout=120)
    finally:
        producer.close(timeout=30)
    return time.monotonic() - started
