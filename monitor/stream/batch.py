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
from monitor.stream.isolate import ScorerUnavailable, score_isolating
from monitor.stream.records import KafkaRecord, coordinates, record_time
from monitor.stream.sink import FlushResult, NewsSink
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
    score_failures: dict[int, str] = field(default_factory=dict)  # index in ``valid`` -> why the model failed
    stored: FlushResult | None = None  # set once the sink wrote the batch, so a retry does not write it again

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
        seen: dict[str, NewsIn] = {}
        for record in records:
            outcome = validate_value(record.value, self.settings.max_message_bytes)
            if isinstance(outcome, Rejection):
                self.dead_letters.send(record, outcome)
            elif outcome.id not in seen:
                seen[outcome.id] = outcome
                valid.append((record, outcome))
            elif outcome != seen[outcome.id]:
                self.dead_letters.send(record, Rejection(
                    "conflicting_duplicate", f"news id {outcome.id!r} appears earlier in this batch with other "
                    "content; first write wins", "validate"))
            else:
                log.info("%s: news id %r already in this batch; keeping the first", coordinates(record), outcome.id)
        return valid

    def prepare(self, records: Sequence[KafkaRecord], poisoned: Sequence[tuple[KafkaRecord, int]] = ()
                ) -> PreparedBatch:
        """Validate, queue dead letters and choose the model for the batch. ``poisoned`` records (the process died
        on each of them ``n`` times, :mod:`monitor.stream.crash_guard`) are dead-lettered and committed past."""
        started = time.perf_counter()
        result = BatchResult(records=len(records) + len(poisoned))
        for record, crashes in poisoned:
            self.dead_letters.send(record, Rejection(
                "crash_loop", f"the consumer process died {crashes} times while processing this message", "process"))
        for record in [*records, *(record for record, _ in poisoned)]:
            key = (record.topic, record.partition)
            result.next_offsets[key] = max(result.next_offsets.get(key, 0), record.offset + 1)
        valid = self.split(records)  # letters are acknowledged in write(), before the offsets are committed
        texts = [news.model_text(self.settings.body_max_chars) for _, news in valid]
        scorer = self.scorers.current() if valid else None  # between batches: one model version per batch
        return PreparedBatch(list(records), valid, texts, scorer, result, started)

    def score(self, batch: PreparedBatch) -> list[Prediction | None]:
        """Run the model over the batch's texts; thread-safe as long as one thread scores at a time.

        Texts that make the model fail are isolated (None, with the reason in ``batch.score_failures``); raises
        :class:`ScorerUnavailable` when the model fails on everything."""
        if batch.scorer is None:
            return []
        score_started = time.perf_counter()
        try:
            predictions, batch.score_failures = score_isolating(batch.scorer, batch.texts)
        except ScorerUnavailable:
            log.error("scoring failed for batch %s", batch_span([r for r, _ in batch.valid]))
            raise
        batch.result.score_ms = (time.perf_counter() - score_started) * 1000
        return predictions

    def write(self, batch: PreparedBatch, predictions: Sequence[Prediction | None]) -> BatchResult:
        """Store the scored rows and dead-letter what could not be scored or stored, then return the result.

        Raises (offsets stay uncommitted) :class:`~monitor.core.db_faults.DatabaseUnavailable` or
        :class:`~monitor.stream.dead_letter.DeadLetterError`; calling again with the same batch resumes where it
        stopped: stored rows are not written twice and letters are not queued twice."""
        result = batch.result
        if batch.dropped:  # revoked while scored: neither written, committed nor counted (they are re-read)
            result.records = sum((r.topic, r.partition) not in batch.dropped for r in batch.records)
            for key in batch.dropped:
                result.next_offsets.pop(key, None)
        if batch.scorer is not None and batch.stored is None:
            result.scored, result.model_version = len(predictions), batch.scorer.version
            by_id: dict[str, KafkaRecord] = {}
            for index, ((record, news), prediction) in enumerate(zip(batch.valid, predictions, strict=True)):
                if (record.topic, record.partition) in batch.dropped:
                    continue
                if prediction is None:
                    self.dead_letters.send(record, Rejection("score_failed", batch.score_failures[index], "score"))
                    continue
                by_id[news.id] = record
                self.sink.add(news_row(record, news, prediction, batch.scorer.version))
            try:
                batch.stored = self.sink.flush()
            except Exception:
                log.error("writing batch %s failed; its offsets stay uncommitted", batch_span(batch.records))
                raise
            for row, why in batch.stored.rejected:
                self.dead_letters.send(by_id[row.id], Rejection("db_rejected", why, "store"))
            for row, why in batch.stored.conflicts:
                self.dead_letters.send(by_id[row.id], Rejection("conflicting_duplicate", why, "store"))
        if batch.stored is not None:
            result.inserted = len(batch.stored.inserted)
        result.dead_lettered += self.dead_letters.flush()  # acknowledged before the consumer commits offsets
        result.total_ms = (time.perf_counter() - batch.started) * 1000
        return result

    def process(self, records: Sequence[KafkaRecord]) -> BatchResult:
        """Run the batch through; raises (and leaves offsets uncommitted) if any step fails."""
        batch = self.prepare(records)
        return self.write(batch, self.score(batch))
