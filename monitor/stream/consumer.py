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
* **Revocation abandons, never half-writes** (:mod:`monitor.stream.intake`): records of revoked partitions are
  dropped uncommitted from every batch in progress and re-read by their next owner.
* **Outages are waited out, not fatal** (:mod:`monitor.stream.outage`). When the database, the broker (dead
  letters, commits) or the model is unavailable, the batch in hand is kept, every assigned partition is paused
  (polls keep the group membership and deliver nothing), and the failed step is retried with capped
  exponential back-off until it succeeds or ``FINPULSE_OUTAGE_DEADLINE_S`` passes. Poison messages are isolated
  by the batch's stages, and messages that kill the process by :mod:`monitor.stream.crash_guard`.
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
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError
from sqlalchemy.engine import Engine

from finetune.device import configure_threads
from monitor.alerts.clock import MemberClock
from monitor.alerts.evaluator import AlertEvaluator
from monitor.alerts.notify import Notifier
from monitor.core import db
from monitor.core.settings import Settings
from monitor.scoring.model_source import ModelSource, ScorerSource
from monitor.signals.buckets import SignalWriter
from monitor.stream.batch import BatchProcessor, PreparedBatch
from monitor.stream.commits import OffsetCommits
from monitor.stream.crash_guard import CrashGuard
from monitor.stream.dead_letter import DeadLetterPublisher
from monitor.stream.health import HealthReporter
from monitor.stream.heartbeat import Heartbeat, member_name
from monitor.stream.intake import Intake, StopRequested
from monitor.stream.isolate import ScorerUnavailable
from monitor.stream.memory import HeapTrimmer
from monitor.stream.outage import OUTAGES, T, database_down, retry, wait_at_start
from monitor.stream.sink import CommitObserver, NewsSink
from monitor.stream.stats import ConsumerStats, RunSummary, at_end, consumer_lag
from schemas.prediction import Prediction

log = logging.getLogger(__name__)

@dataclass
class InFlight:
    """The batch on the scoring thread."""

    batch: PreparedBatch
    predictions: Future[list[Prediction | None]]


class NewsConsumer:
    """Consumes ``settings.kafka_topic`` in the group ``settings.kafka_group_id`` until :meth:`stop`."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None, scorers: ScorerSource | None = None,
                 max_messages: int | None = None, idle_exit_s: float | None = None,
                 observers: Sequence[CommitObserver] = ()) -> None:
        self.settings = settings
        self.observers = list(observers)  # the sink's extension point: called after each commit, before alerts
        self.member = member_name()
        self.health = HealthReporter(settings, self.member)
        self.health.set("starting")
        self._owns_engine = engine is None
        self.engine = engine or db.make_engine(settings.database_url)
        try:
            wait_at_start(lambda: db.require_migrated(self.engine), database_down, "database", "database_retrying",
                          settings=settings, health=self.health)
            log.info("%s: scoring on %d CPU thread(s)", self.member, configure_threads())
            self.scorers = scorers or ModelSource(settings, self.engine)
            self.scorers.current()  # load the model now: a missing model fails at start, not at the first message
        except BaseException:
            self.close()
            raise
        self.max_messages = max_messages
        self.idle_exit_s = idle_exit_s
        self.summary = RunSummary()
        self._stop = threading.Event()
        # A per-process token: in a container the host name and pid repeat across restarts.
        self._guard = CrashGuard(self.engine, settings.poison_max_crashes, f"{self.member}:{uuid.uuid4().hex[:8]}")
        self._in_flight: InFlight | None = None
        self._writing: PreparedBatch | None = None  # the batch being written (possibly waiting out an outage)
        self._intake = Intake(settings, self.health, self._in_progress, self._forget)
        self._commits = OffsetCommits(self._guard.committed)
        self._isolating = False
        self._scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finpulse-score")
        self._heap = HeapTrimmer()
        self._alerts_clock = MemberClock()  # the evaluator's, once run() made it: reported in the heartbeat

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()
        self.health.close()

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
        """The subscribed client; a broker that does not answer yet is waited for like a database at start-up."""
        reason = (f"no Kafka broker answered at {self.settings.kafka_bootstrap} (start one with `finpulse broker` "
                  "or fix FINPULSE_KAFKA_BOOTSTRAP)")
        consumer = wait_at_start(  # kafka-python 3 raises these when no bootstrap server answers
            lambda: KafkaConsumer(**self.kafka_config()),
            lambda error: reason if isinstance(error, KafkaTimeoutError) else None,
            "broker", "broker_reconnecting", settings=self.settings, health=self.health)
        consumer.subscribe([self.settings.kafka_topic], listener=self._intake.tracker)
        return consumer

    def run(self) -> RunSummary:
        consumer = self.connect()
        dead_letters = DeadLetterPublisher(self.settings)
        notifier = Notifier(self.engine, self.settings)
        notifier.resume()  # deliver what a previous run left in the outbox
        alerts = AlertEvaluator(self.settings, self.engine, notifier, member=self.member)
        self._alerts_clock = alerts.clock
        sink = NewsSink(self.engine, signals=SignalWriter(self.settings), alerts=alerts, observers=self.observers)
        processor = BatchProcessor(self.settings, self.scorers, dead_letters, sink)
        stats = ConsumerStats(self.settings.stats_interval_s)
        heartbeat = Heartbeat(self.engine, self.settings.kafka_group_id, self.settings.kafka_topic, self.member)
        log.info("consuming %s as group %s (batches of up to %d messages / %d ms)", self.settings.kafka_topic,
                 self.settings.kafka_group_id, self.settings.batch_max_messages, self.settings.batch_max_wait_ms)
        self._model_health()
        last_message = time.monotonic()
        try:
            while not self._stop.is_set() and not self._limit_reached():
                # The idle clock runs only while partitions are assigned: a group join (slow after a crashed
                # member, whose session must time out first) is not idleness.
                got = self._collect(consumer)
                if got or not consumer.assignment():
                    last_message = time.monotonic()
                alerts.polled(got or bool(self._in_hand()) or not at_end(consumer))  # the alert timer
                if self._intake.ready(self._limit_reached()):
                    self._advance(consumer, processor, stats)
                elif self._in_flight is not None and self._in_flight.predictions.done():
                    self._finish(consumer, processor, stats)
                elif (not self._intake.pending and self._in_flight is None and self.idle_exit_s is not None
                      and not self._commits.behind and time.monotonic() - last_message >= self.idle_exit_s):
                    log.info("no message for %.1f s; stopping (--idle-exit-s)", self.idle_exit_s)
                    break
                self._settle(self._commits.retry_due(consumer))
                if stats.due():
                    self._report(consumer, stats, heartbeat)
            if self._intake.pending:  # finish the batches in hand before leaving
                self._advance(consumer, processor, stats)
            if self._in_flight is not None:
                self._finish(consumer, processor, stats)
            self._commits.retry_due(consumer)
        except StopRequested:
            log.warning("stopped during an outage; the batches in hand are not committed and will be re-read")
        finally:
            self._scoring.shutdown(wait=True, cancel_futures=True)
            consumer.close(autocommit=False)
            heartbeat.leave()
            dead_letters.close()
            alerts.close()  # stops the notifier thread
            self.close()
        log.info(self.summary.line())
        return self.summary

    def _model_health(self) -> None:
        refusal = getattr(self.scorers, "refusal", None)  # ModelSource: why the champion is not what serves
        if refusal and self.health.status in ("ok", "starting"):
            self.health.set("model_refused", refusal)
        elif not refusal and self.health.status in ("model_refused", "starting"):
            self.health.ok()

    def _report(self, consumer: Any, stats: ConsumerStats, heartbeat: Heartbeat) -> None:
        self._model_health()
        lag = consumer_lag(consumer)
        rate = stats.report(lag)
        heartbeat.beat(lag=lag, messages_per_s=rate, partitions=[tp.partition for tp in consumer.assignment()],
                       model_version=stats.model_version, status=self.health.status, detail=self.health.detail,
                       event_clock=self._alerts_clock.newest, caught_up=self._alerts_clock.caught_up)

    def _settle(self, committed: bool | None) -> None:
        """Health follows the owed commit: reconnecting while the broker refuses it, ok once it went through."""
        if committed is False:
            self.health.set("broker_reconnecting", "offset commits are refused; the rows are stored")
        elif committed and self.health.status == "broker_reconnecting":
            self.health.ok()

    def _in_hand(self) -> int:
        """Records taken from Kafka but not yet counted in the summary."""
        return len(self._intake.pending) + (len(self._in_flight.batch.records) if self._in_flight is not None else 0)

    def _limit_reached(self) -> bool:
        return self.max_messages is not None and self.summary.messages + self._in_hand() >= self.max_messages

    def _collect(self, consumer: Any) -> bool:
        room = self.settings.batch_max_messages - len(self._intake.pending)
        if self.max_messages is not None:
            room = min(room, self.max_messages - self.summary.messages - self._in_hand())
        scoring = self._in_flight is not None and not self._in_flight.predictions.done()
        return self._intake.collect(consumer, room, scoring)

    def _in_progress(self) -> list[PreparedBatch]:
        """Batches taken but not committed, oldest first."""
        return [b for b in (self._writing, self._in_flight.batch if self._in_flight else None) if b is not None]

    def _forget(self, partitions: set[tuple[str, int]]) -> None:
        self._guard.forget(partitions)
        self._commits.forget(partitions)

    def _advance(self, consumer: Any, processor: BatchProcessor, stats: ConsumerStats) -> None:
        """Admit the pending batch past the crash guard, validate it and queue it for scoring, then write the
        batch scored before it. While a partition is processed one message at a time, nothing is pipelined."""
        if self._isolating and self._in_flight is not None:
            self._finish(consumer, processor, stats)
        admission = self._retry(consumer, lambda: self._guard.admit(self._intake.pending))
        self._intake.pending = []
        for (topic, partition), offset in admission.deferred.items():
            consumer.seek(TopicPartition(topic, partition), offset)  # the rest come back one at a time
        self._isolating = admission.isolating
        batch = processor.prepare(admission.records, admission.poisoned)
        previous = self._in_flight
        self._in_flight = InFlight(batch, self._scoring.submit(processor.score, batch))
        if previous is not None:
            self._write(consumer, processor, previous, stats)
        if self._isolating:
            self._finish(consumer, processor, stats)

    def _finish(self, consumer: Any, processor: BatchProcessor, stats: ConsumerStats) -> None:
        """Write the batch on the scoring thread (waiting for its predictions)."""
        flight, self._in_flight = self._in_flight, None
        if flight is not None:
            self._write(consumer, processor, flight, stats)

    def _write(self, consumer: Any, processor: BatchProcessor, flight: InFlight, stats: ConsumerStats) -> None:
        self._writing = flight.batch
        try:
            predictions = self._retry(consumer, lambda: self._predictions(flight, processor))
            result = self._retry(consumer, lambda: processor.write(flight.batch, predictions))
        finally:
            self._writing = None
        self._settle(self._commits.commit(consumer, result.next_offsets))
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

    def _predictions(self, flight: InFlight, processor: BatchProcessor) -> list[Prediction | None]:
        """The flight's predictions; after a failure, scored again on the scoring thread (one scorer at a time)."""
        try:
            return flight.predictions.result()
        except ScorerUnavailable:
            flight.predictions = self._scoring.submit(processor.score, flight.batch)  # the next try waits on it
            raise

    def _retry(self, consumer: Any, step: Callable[[], T]) -> T:
        """Run ``step`` until it succeeds, waiting out outages with every partition paused (see the module doc)."""
        return retry(step, OUTAGES, settings=self.settings, health=self.health,
                     wait=lambda seconds: self._intake.wait_paused(consumer, seconds, self._stop),
                     on_recovered=lambda: consumer.resume(*consumer.paused()))
