"""``finpulse consume``: the Kafka consumer loop (micro-batches, explicit commits, rebalances, graceful stop).

Design, and why it is safe:

* **Pipelined batches.** Records are collected over a few ``poll()`` calls until the batch is full
  (``batch_max_messages``) or old (``batch_max_wait_ms``). A ready batch is validated and dead-lettered on this
  thread, then handed to ONE scoring thread; while the model runs, this thread writes and commits the previous
  batch and polls and validates the next. So at most one batch is scored-but-unwritten, the model never waits
  for the database, and memory stays bounded. Only polling, writing and committing happen on this thread.
* **Commits follow the database.** Offsets (last processed + 1 per partition) of a batch are committed only after
  that batch's transaction committed, batch after batch in order; a crash re-reads, the idempotent sink skips
  what is stored.
* **Revocation abandons, never half-writes.** kafka-python runs rebalance callbacks only inside ``poll()``; after
  every poll, records of revoked (or lost) partitions are dropped uncommitted, both those collected for the next
  batch and those of the batch being scored (its other partitions are still written and committed). The next
  owner re-reads them from the committed offset. kafka-python 3.0 keeps a partition's fetch position across an
  eager rebalance when the partition comes back to the same member, so for such partitions we ``seek`` back to
  the first dropped offset.
* **max_poll_interval.** The time between polls is at most about one batch's processing time, so
  ``max_poll_records`` and the batch size are both ``batch_max_messages``; a batch that took over half of
  ``kafka_max_poll_interval_ms`` is logged with the fix. Heartbeats run on kafka-python's IO thread meanwhile.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata
from sqlalchemy.engine import Engine

from finetune.device import configure_threads
from monitor.alerts.evaluator import AlertEvaluator
from monitor.alerts.notify import Notifier
from monitor.core import db
from monitor.core.errors import ConfigError
from monitor.core.settings import Settings
from monitor.scoring.model_source import ModelSource, ScorerSource
from monitor.signals.buckets import SignalWriter
from monitor.stream.batch import BatchProcessor, BatchResult, PreparedBatch
from monitor.stream.dead_letter import DeadLetterPublisher
from monitor.stream.heartbeat import Heartbeat
from monitor.stream.memory import HeapTrimmer
from monitor.stream.rebalance import RevocationTracker, names
from monitor.stream.records import KafkaRecord
from monitor.stream.sink import CommitObserver, NewsSink
from monitor.stream.stats import ConsumerStats, RunSummary, consumer_lag
from schemas.prediction import Prediction

log = logging.getLogger(__name__)

IDLE_POLL_MS = 250  # longest a poll blocks, so a stop request or idle exit is noticed promptly
SCORING_POLL_MS = 10  # longest a poll blocks while a batch is scored, so its rows are written promptly
MAX_POLL_FAILURES = 20  # consecutive failed polls (about a minute of back-off) before giving up


@dataclass
class InFlight:
    """The batch on the scoring thread."""

    batch: PreparedBatch
    predictions: Future[list[Prediction]]


class NewsConsumer:
    """Consumes ``settings.kafka_topic`` in the group ``settings.kafka_group_id`` until :meth:`stop`."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None, scorers: ScorerSource | None = None,
                 max_messages: int | None = None, idle_exit_s: float | None = None,
                 observers: Sequence[CommitObserver] = ()) -> None:
        self.settings = settings
        self.observers = list(observers)  # the sink's extension point: called after each commit, before alerts
        self._owns_engine = engine is None
        self.engine = engine or db.make_engine(settings.database_url)
        try:
            db.require_migrated(self.engine)
            configure_threads()
            self.scorers = scorers or ModelSource(settings, self.engine)
            self.scorers.current()  # load the model now: a missing model fails at start, not at the first message
        except BaseException:
            self.close()
            raise
        self.max_messages = max_messages
        self.idle_exit_s = idle_exit_s
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._tracker = RevocationTracker()
        self._pending: list[KafkaRecord] = []
        self._in_flight: InFlight | None = None
        self._batch_deadline = 0.0
        self._poll_failures = 0
        self._heap = HeapTrimmer()

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def stop(self) -> None:
        """Finish the current batch, commit, close. Safe from a signal handler or another thread."""
        self._stop.set()

    def kafka_config(self) -> dict[str, Any]:
        s = self.settings
        return {
            **s.kafka_client_config(),
            "group_id": s.kafka_group_id,
            "client_id": f"finpulse-{socket.gethostname()}-{os.getpid()}",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": s.kafka_session_timeout_ms,
            "heartbeat_interval_ms": max(100, min(3000, s.kafka_session_timeout_ms // 6)),
            "max_poll_interval_ms": s.kafka_max_poll_interval_ms,
            "max_poll_records": s.batch_max_messages,
            # Static membership (KIP-345): a restarted member with the same instance id takes its partitions back
            # at once, without a rebalance or waiting out the dead process's session.
            "group_instance_id": s.kafka_group_instance_id,
        }

    def connect(self) -> Any:
        try:
            consumer = KafkaConsumer(**self.kafka_config())
        except KafkaTimeoutError:  # kafka-python 3 raises this when no bootstrap server answers
            raise ConfigError(f"no Kafka broker answered at {self.settings.kafka_bootstrap}; start one with "
                              "`finpulse broker` or set FINPULSE_KAFKA_BOOTSTRAP") from None
        consumer.subscribe([self.settings.kafka_topic], listener=self._tracker)
        return consumer

    def run(self) -> RunSummary:
        consumer = self.connect()
        dead_letters = DeadLetterPublisher(self.settings)
        notifier = Notifier(self.engine, self.settings)
        notifier.resume()  # deliver what a previous run left in the outbox
        alerts = AlertEvaluator(self.settings, self.engine, notifier)
        sink = NewsSink(self.engine, signals=SignalWriter(self.settings), alerts=alerts, observers=self.observers)
        processor = BatchProcessor(self.settings, self.scorers, dead_letters, sink)
        stats = ConsumerStats(self.settings.stats_interval_s)
        heartbeat = Heartbeat(self.engine, self.settings.kafka_group_id, self.settings.kafka_topic)
        log.info("consuming %s as group %s (batches of up to %d messages / %d ms)", self.settings.kafka_topic,
                 self.settings.kafka_group_id, self.settings.batch_max_messages, self.settings.batch_max_wait_ms)
        last_message = time.monotonic()
        scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finpulse-score")
        try:
            while not self._stop.is_set() and not self._limit_reached():
                # The idle clock runs only while partitions are assigned: a group join (slow after a crashed
                # member, whose session must time out first) is not idleness.
                if self._collect(consumer) or not consumer.assignment():
                    last_message = time.monotonic()
                if self._batch_ready():
                    self._advance(consumer, processor, scoring, stats)
                elif self._in_flight is not None and self._in_flight.predictions.done():
                    self._finish(consumer, processor, stats)
                elif (not self._pending and self._in_flight is None and self.idle_exit_s is not None
                      and time.monotonic() - last_message >= self.idle_exit_s):
                    log.info("no message for %.1f s; stopping (--idle-exit-s)", self.idle_exit_s)
                    break
                if stats.due():
                    self._report(consumer, stats, heartbeat)
            if self._pending:  # finish the batches in hand before leaving
                self._advance(consumer, processor, scoring, stats)
            if self._in_flight is not None:
                self._finish(consumer, processor, stats)
        finally:
            scoring.shutdown(wait=True, cancel_futures=True)
            consumer.close(autocommit=False)
            heartbeat.leave()
            dead_letters.close()
            alerts.close()  # stops the notifier thread
            self.close()
        log.info(self.summary.line())
        return self.summary

    def _report(self, consumer: Any, stats: ConsumerStats, heartbeat: Heartbeat) -> None:
        lag = consumer_lag(consumer)
        rate = stats.report(lag)
        heartbeat.beat(lag=lag, messages_per_s=rate, partitions=[tp.partition for tp in consumer.assignment()],
                       model_version=stats.model_version)

    def _in_hand(self) -> int:
        """Records taken from Kafka but not yet counted in the summary."""
        return len(self._pending) + (len(self._in_flight.batch.records) if self._in_flight is not None else 0)

    def _limit_reached(self) -> bool:
        return self.max_messages is not None and self.summary.messages + self._in_hand() >= self.max_messages

    def _batch_ready(self) -> bool:
        if not self._pending:
            return False
        return (len(self._pending) >= self.settings.batch_max_messages or self._limit_reached()
                or time.monotonic() >= self._batch_deadline)

    def _collect(self, consumer: Any) -> bool:
        """One poll into the pending batch; returns whether records arrived."""
        room = self.settings.batch_max_messages - len(self._pending)
        if self.max_messages is not None:
            room = min(room, self.max_messages - self.summary.messages - self._in_hand())
        if self._pending:
            wait_ms = int(max(0.0, self._batch_deadline - time.monotonic()) * 1000)
        else:
            wait_ms = self.settings.batch_max_wait_ms
        scoring = self._in_flight is not None and not self._in_flight.predictions.done()
        try:
            polled = consumer.poll(timeout_ms=min(wait_ms, SCORING_POLL_MS if scoring else IDLE_POLL_MS),
                                   max_records=max(1, room))
            self._poll_failures = 0
        except KafkaError as error:
            # A group-coordination error (a rebalance racing a restarted member, a busy coordinator) must not
            # end the process: the pending records are still ours unless the listener reported them revoked.
            self._poll_failures += 1
            if self._poll_failures > MAX_POLL_FAILURES:
                raise
            log.warning("poll failed (%s: %s); retrying (%d/%d)", type(error).__name__, error,
                        self._poll_failures, MAX_POLL_FAILURES)
            time.sleep(min(5.0, 0.2 * 2 ** min(self._poll_failures, 5)))
            polled = {}
        arrived = [record for records in polled.values() for record in records]
        if arrived and not self._pending:
            self._batch_deadline = time.monotonic() + self.settings.batch_max_wait_ms / 1000
        self._pending.extend(arrived)
        self._abandon_revoked(consumer)
        return bool(arrived)

    def _abandon_revoked(self, consumer: Any) -> None:
        revoked = self._tracker.take()
        if not revoked or not (self._pending or self._in_flight):
            return
        first_dropped: dict[TopicPartition, int] = {}
        if self._in_flight is not None:  # its records precede the pending ones of the same partition
            for (topic, partition), offset in self._in_flight.batch.drop(revoked).items():
                first_dropped[TopicPartition(topic, partition)] = offset
        kept: list[KafkaRecord] = []
        for record in self._pending:
            tp = TopicPartition(record.topic, record.partition)
            if tp in revoked:
                first_dropped[tp] = min(first_dropped.get(tp, record.offset), record.offset)
            else:
                kept.append(record)
        self._pending = kept
        assigned = consumer.assignment()
        for tp, offset in first_dropped.items():
            if tp in assigned:  # came back to us with its position kept: rewind to what we dropped
                consumer.seek(tp, offset)
        if first_dropped:
            log.info("rebalance: abandoned uncommitted records of %s (they will be re-read)", names(first_dropped))

    def _advance(self, consumer: Any, processor: BatchProcessor, scoring: ThreadPoolExecutor,
                 stats: ConsumerStats) -> None:
        """Validate the pending batch and queue it for scoring, then write the batch scored before it."""
        records, self._pending = self._pending, []
        batch = processor.prepare(records)
        previous, self._in_flight = self._in_flight, InFlight(batch, scoring.submit(processor.score, batch))
        if previous is not None:
            self._write(consumer, processor, previous, stats)

    def _finish(self, consumer: Any, processor: BatchProcessor, stats: ConsumerStats) -> None:
        """Write the batch on the scoring thread (waiting for its predictions)."""
        flight, self._in_flight = self._in_flight, None
        if flight is not None:
            self._write(consumer, processor, flight, stats)

    def _write(self, consumer: Any, processor: BatchProcessor, flight: InFlight, stats: ConsumerStats) -> None:
        result = processor.write(flight.batch, flight.predictions.result())
        self._commit(consumer, result)
        self._heap.maybe_trim()  # on this thread, while the model scores the next batch
        stats.add(result)
        self.summary.messages += result.records
        self.summary.dead_lettered += result.dead_lettered
        self.summary.inserted += result.inserted
        self.summary.batches += 1
        self.summary.partitions |= set(result.next_offsets)
        limit_ms = self.settings.kafka_max_poll_interval_ms
        if result.total_ms > limit_ms / 2:
            log.warning("a batch of %d took %.0f ms, over half of max_poll_interval_ms (%d); lower "
                        "FINPULSE_BATCH_MAX_MESSAGES or raise FINPULSE_KAFKA_MAX_POLL_INTERVAL_MS",
                        result.records, result.total_ms, limit_ms)

    def _commit(self, consumer: Any, result: BatchResult) -> None:
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in result.next_offsets.items()}
        try:
            consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError) as error:
            # The group moved on while we wrote; the rows are stored, so whoever reads these records again
            # finds their ids present and inserts nothing. Dead letters of this batch may be sent twice.
            log.warning("offset commit for %s failed after the batch was written (%s); the next owner re-reads "
                        "it without duplicating rows", names(offsets), type(error).__name__)
        except KafkaError as error:
            log.error("offset commit for %s failed: %s", names(offsets), error)
            raise
