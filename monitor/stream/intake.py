"""What the consumer has taken from Kafka and not yet handed on: polling into the pending batch, and rebalances.

kafka-python runs rebalance callbacks only inside ``poll()``; after every poll, records of revoked (or lost)
partitions are dropped uncommitted from everything in progress: the pending records, the batch being scored and
the batch being written (its other partitions are still written and committed). The next owner re-reads them
from the committed offset. kafka-python 3.0 keeps a partition's fetch position across an eager rebalance when the
partition comes back to the same member, so for such partitions we ``seek`` back to the first dropped offset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from monitor.core.settings import Settings
from monitor.stream.batch import PreparedBatch
from monitor.stream.health import HealthReporter
from monitor.stream.outage import Backoff
from monitor.stream.rebalance import RevocationTracker, names
from monitor.stream.records import KafkaRecord

log = logging.getLogger(__name__)

IDLE_POLL_MS = 250  # longest a poll blocks, so a stop request or idle exit is noticed promptly
SCORING_POLL_MS = 10  # longest a poll blocks while a batch is scored, so its rows are written promptly
OUTAGE_POLL_MS = 200  # polls while waiting out an outage: short, so the back-off is kept accurately
POLL_FAILURE_SLEEP_MAX_S = 5.0


class StopRequested(Exception):
    """A stop was requested while an outage was being waited out: leave without committing the batch in hand."""


class Intake:
    def __init__(self, settings: Settings, health: HealthReporter,
                 in_progress: Callable[[], Iterable[PreparedBatch]],
                 on_revoked: Callable[[set[tuple[str, int]]], None]) -> None:
        self.settings, self.health = settings, health
        self.tracker = RevocationTracker()
        self.pending: list[KafkaRecord] = []
        self._in_progress, self._on_revoked = in_progress, on_revoked
        self._deadline = 0.0
        self._poll_backoff = Backoff("broker", settings.outage_deadline_s, settings.retry_max_backoff_s)

    def ready(self, limit_reached: bool) -> bool:
        """The pending batch is full, old, or the run's message limit is reached."""
        return bool(self.pending) and (len(self.pending) >= self.settings.batch_max_messages or limit_reached
                                       or time.monotonic() >= self._deadline)

    def collect(self, consumer: Any, room: int, scoring: bool) -> bool:
        """One poll into the pending batch; returns whether records arrived."""
        if self.pending:
            wait_ms = int(max(0.0, self._deadline - time.monotonic()) * 1000)
        else:
            wait_ms = self.settings.batch_max_wait_ms
        try:
            polled = consumer.poll(timeout_ms=min(wait_ms, SCORING_POLL_MS if scoring else IDLE_POLL_MS),
                                   max_records=max(1, room))
            if self._poll_backoff.active:
                self._poll_backoff.recovered()
                self.health.ok()
        except KafkaError as error:
            # A group-coordination error (a rebalance racing a restarted member, a busy coordinator) or a broker
            # that went away must not end the process: the pending records are still ours unless the listener
            # reported them revoked.
            reason = f"poll failed: {type(error).__name__}: {error}"
            self.health.set("broker_reconnecting", reason)
            time.sleep(min(POLL_FAILURE_SLEEP_MAX_S, self._poll_backoff.failed(reason)))
            polled = {}
        self.take(polled)
        self.abandon_revoked(consumer)
        return bool(polled)

    def take(self, polled: dict[Any, list[KafkaRecord]]) -> None:
        arrived = [record for records in polled.values() for record in records]
        if arrived and not self.pending:
            self._deadline = time.monotonic() + self.settings.batch_max_wait_ms / 1000
        self.pending.extend(arrived)

    def abandon_revoked(self, consumer: Any) -> None:
        revoked = self.tracker.take()
        if not revoked:
            return
        self._on_revoked({(tp.topic, tp.partition) for tp in revoked})
        first_dropped: dict[TopicPartition, int] = {}
        for batch in self._in_progress():  # oldest first: the batch being written, then the one being scored
            for (topic, partition), offset in batch.drop(revoked).items():
                first_dropped.setdefault(TopicPartition(topic, partition), offset)
        kept: list[KafkaRecord] = []
        for record in self.pending:
            tp = TopicPartition(record.topic, record.partition)
            if tp in revoked:
                first_dropped.setdefault(tp, record.offset)
            else:
                kept.append(record)
        self.pending = kept
        assigned = consumer.assignment()
        for tp, offset in first_dropped.items():
            if tp in assigned:  # came back to us with its position kept: rewind to what we dropped
                consumer.seek(tp, offset)
        if first_dropped:
            log.info("rebalance: abandoned uncommitted records of %s (they will be re-read)", names(first_dropped))

    def wait_paused(self, consumer: Any, seconds: float, stop: threading.Event) -> None:
        """Sleep ``seconds`` while polling with every partition paused: the group keeps us, rebalances apply."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if stop.is_set():
                raise StopRequested
            consumer.pause(*consumer.assignment())  # again each time: a rebalance may have assigned new ones
            try:
                self.take(consumer.poll(timeout_ms=int(min(OUTAGE_POLL_MS, left * 1000)) + 1, max_records=1))
            except KafkaError as error:
                log.debug("poll during an outage failed: %s", error)
                time.sleep(min(left, OUTAGE_POLL_MS / 1000))
            self.abandon_revoked(consumer)
