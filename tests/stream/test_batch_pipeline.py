"""The batch stages the consumer pipelines: a partition revoked while its batch is scored is neither written nor
committed nor counted, and the rest of the batch is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, select

from monitor.core import db
from monitor.scoring.model_source import ModelSource
from monitor.stream.batch import BatchProcessor
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.dead_letter import DeadLetterPublisher
from monitor.stream.sink import NewsSink
from schemas.news import News
from tests.stream_helpers import consumer_settings, encode, news


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record (the fields monitor.stream.records.KafkaRecord names)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int = 1_709_285_400_000
    key: bytes | None = None


def test_revoked_partition_of_a_scored_batch_is_dropped_and_the_rest_written(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path,
) -> None:
    db.upgrade(sqlite_url)
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir)
    engine = db.make_engine(sqlite_url)
    dead_letters = DeadLetterPublisher(settings)
    try:
        processor = BatchProcessor(settings, ModelSource(settings, engine), dead_letters, NewsSink(engine))
        records = [Record(topics[0], i % 2, 10 + i // 2, encode(news(i))) for i in range(6)]
        records.append(Record(topics[0], 1, 13, b"not json"))  # dead-lettered before scoring, either way
        batch = processor.prepare(records)
        assert len(batch.texts) == 6  # its dead letter is queued now, acknowledged by write()
        predictions = processor.score(batch)  # the consumer runs this on its scoring thread
        assert batch.drop({(topics[0], 1)}) == {(topics[0], 1): 10}  # the rebalance lands meanwhile
        assert batch.drop({(topics[0], 1)}) == {}  # already dropped
        result = processor.write(batch, predictions)
        assert result.records == 3 and result.inserted == 3 and result.scored == 6 and result.dead_lettered == 1
        assert result.next_offsets == {(topics[0], 0): 13}  # partition 1 stays uncommitted: it is re-read
        with Session(engine) as session:
            stored = session.exec(select(News.id, News.kafka_partition)).all()
        assert sorted(stored) == [("news-0", 0), ("news-2", 0), ("news-4", 0)]

        again = processor.process(records)  # the re-read batch (no revocation this time) adds only partition 1
        assert again.inserted == 3 and again.next_offsets == {(topics[0], 0): 13, (topics[0], 1): 14}
    finally:
        dead_letters.close()
        engine.dispose()
