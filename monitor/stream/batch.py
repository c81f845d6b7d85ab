"""One micro-batch, start to end: validate -> dead-letter the bad ones -> score the good ones -> sink.

Ordering is the delivery guarantee. Dead letters are acknowledged before the rows are written, rows are
committed before the consumer commits offsets (it does so with :attr:`BatchResult.next_offsets` only after
:meth:`BatchProcessor.write` returned). A crash anywhere re-reads the batch: the sink skips stored ids, and a
dead letter may be published twice but never lost.

The three stages are separate methods so the consumer can pipeline them: :meth:`BatchProcessor.prepare`
(validation, dead letters, choice of model) and :meth:`BatchProcessor.write` (rows, signals, commit) run on the
consumer's thread, :meth:`BatchProcessor.score` (the only step that runs the model) on its scoring thread.
:meth:`BatchProcessor.process` runs them one after the other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from monitor.core.settings import Settings
from monitor.scoring.model_source import ScorerSource
from monitor.scoring.scorer import Scorer
from monitor.stream.dead_letter import DeadLetterPublisher
from monitor.stream.records import KafkaRecord, coordinates, record_time
from monitor.stream.sink import NewsSink
from monitor.stream.validate import Rejection, validate_value
from schemas.news import News, NewsIn
from schemas.prediction import Prediction
from schemas.types import utcnow

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    records: int = 0
    dead_lettered: int = 0
    scored: int = 0
    inserted: int = 0
    score_ms: float = 0.0
    total_ms: float = 0.0
    model_version: str | None = None
    # (topic, partition) -> last processed offset + 1: what the consumer commits.
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)


def news_row(record: KafkaRecord, news: NewsIn, prediction: Prediction, model_version: str) -> News:
    """The table row for one scored message: the message's fields, its Kafka coordinates and the scores."""
    return News(
        **news.model_dump(),
        kafka_topic=record.topic,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        ingested_at=record_time(record),
        scored_at=utcnow(),
        model_version=model_version,
        p_negative=prediction.probs[0],
        p_neutral=prediction.probs[1],
        p_positive=prediction.probs[2],
        score=prediction.score,
        confidence=prediction.confidence,
        sentiment=prediction.sentiment,
        entities=[entity.to_json() for entity in prediction.entities],
    )


def batch_span(records: Sequence[KafkaRecord]) -> str:
    """``topic[p]@first..last`` per partition, for log lines about a whole batch."""
    spans: dict[tuple[str, int], list[int]] = {}
    for record in records:
        spans.setdefault((record.topic, record.partition), []).append(record.offset)
    return ", ".join(f"{t}[{p}]@{min(o)}..{max(o)}" for (t, p), o in sorted(spans.items()))


@dataclass
class PreparedBatch:
    """A validated batch on its way through scoring: what :meth:`BatchProcessor.write` needs."""

    records: list[KafkaRecord]
    valid: list[tuple[KafkaRecord, NewsIn]]
    texts: list[str]
    scorer: Scorer | None
    result: BatchResult
    started: float
    dropped: set[tuple[str, int]] = field(default_factory=set)  # partitions revoked while in flight

    def drop(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """Abandon the records of ``partitions`` (revoked): they are neither written nor committed. Returns the
        first abandoned offset per partition, where the consumer must seek back if the partition stays ours."""
        first: dict[tuple[str, int], int] = {}
        for record in self.records:
            key = (record.topic, record.partition)
            if key in partitions and key not in self.dropped:
                first[key] = min(first.get(key, record.offset), record.offset)
        self.dropped |= set(first)
        return first


class BatchProcessor:
    def __init__(self, settings: Settings, scorers: ScorerSource, dead_letters: DeadLetterPublisher,
                 sink: NewsSink) -> None:
        self.settings = settings
        self.scorers = scorers
        self.dead_letters = dead_letters
        self.sink = sink

    def split(self, records: Sequence[KafkaRecord]) -> list[tuple[KafkaRecord, NewsIn]]:
        """Valid messages (first of each news id); the rest are sent to the dead-letter topic."""
        valid: list[tuple[KafkaRecord, NewsIn]] = []
        seen: set[str] = set()
        for record in records:
            outcome = validate_value(record.value, self.settings.max_message_bytes)
            if isinstance(outcome, Rejection):
                self.dead_letters.send(record, outcome)
            elif outcome.id in seen:
                log.info("%s: news id %r already in this batch; keeping the first", coordinates(record), outcome.id)
            else:
                seen.add(outcome.id)
                valid.append((record, outcome))
        return valid

    def prepare(self, records: Sequence[KafkaRecord]) -> PreparedBatch:
        """Validate, dead-letter (acknowledged before returning) and choose the model for the batch."""
        started = time.perf_counter()
        result = BatchResult(records=len(records))
        for record in records:
            key = (record.topic, record.partition)
            result.next_offsets[key] = max(result.next_offsets.get(key, 0), record.offset + 1)
        valid = self.split(records)
        result.dead_lettered = self.dead_letters.flush()
        texts = [news.model_text(self.settings.body_max_chars) for _, news in valid]
        scorer = self.scorers.current() if valid else None  # between batches: one model version per batch
        return PreparedBatch(list(records), valid, texts, scorer, result, started)

    def score(self, batch: PreparedBatch) -> list[Prediction]:
        """Run the model over the batch's texts; thread-safe as long as one thread scores at a time."""
        if batch.scorer is None:
            return []
        score_started = time.perf_counter()
        try:
            predictions = batch.scorer.score(batch.texts)
        except Exception:
            log.error("scoring failed for batch %s", batch_span([r for r, _ in batch.valid]))
            raise
        batch.result.score_ms = (time.perf_counter() - score_started) * 1000
        return predictions

    def write(self, batch: PreparedBatch, predictions: Sequence[Prediction]) -> BatchResult:
        """Store the scored rows in one transaction; raises (and leaves offsets uncommitted) if that fails."""
        result = batch.result
        if batch.dropped:  # revoked while scored: neither written, committed nor counted (they are re-read)
            result.records = sum((r.topic, r.partition) not in batch.dropped for r in batch.records)
            for key in batch.dropped:
                result.next_offsets.pop(key, None)
        if batch.scorer is not None:
            result.scored, result.model_version = len(predictions), batch.scorer.version
            for (record, news), prediction in zip(batch.valid, predictions, strict=True):
                if (record.topic, record.partition) not in batch.dropped:
                    self.sink.add(news_row(record, news, prediction, batch.scorer.version))
            try:
                result.inserted = len(self.sink.flush())
            except Exception:
                log.error("writing batch %s failed; its offsets stay uncommitted", batch_span(batch.records))
                raise
        result.total_ms = (time.perf_counter() - batch.started) * 1000
        return result

    def process(self, records: Sequence[KafkaRecord]) -> BatchResult:
        """Run the batch through; raises (and leaves offsets uncommitted) if any step fails."""
        batch = self.prepare(records)
        return self.write(batch, self.score(batch))
