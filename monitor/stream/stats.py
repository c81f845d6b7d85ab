"""The consumer's periodic log line (messages/s, batch size, scoring time, lag) and its final summary."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError

from monitor.stream.batch import BatchResult

log = logging.getLogger(__name__)

LAG_TIMEOUT_MS = 2_000


@dataclass
class RunSummary:
    messages: int = 0
    dead_lettered: int = 0
    inserted: int = 0
    batches: int = 0
    partitions: set[tuple[str, int]] = field(default_factory=set)

    def line(self) -> str:
        parts = ", ".join(f"{t}[{p}]" for t, p in sorted(self.partitions)) or "none"
        return (f"consumer stopped: {self.messages} messages in {self.batches} batches, {self.inserted} rows "
                f"inserted, {self.dead_lettered} dead-lettered; partitions handled: {parts}")


def at_end(consumer: Any) -> bool:
    """Whether every assigned partition has been read to the high watermark of its last fetch: the member has
    caught up. False while it has no assignment or has not fetched yet (an empty poll during a group join or
    before the first fetch says nothing about the backlog)."""
    partitions = list(consumer.assignment())
    if not partitions:
        return False
    try:
        for tp in partitions:
            end = consumer.highwater(tp)
            if end is None or consumer.position(tp, timeout_ms=LAG_TIMEOUT_MS) < end:
                return False
    except KafkaError as error:
        log.debug("position unavailable: %s", error)
        return False
    return True


def consumer_lag(consumer: Any) -> int | None:
    """Sum over assigned partitions of end offset - position; None when unknown (no assignment yet, broker busy).

    The end offset is the larger of ListOffsets' answer and the high watermark of the last fetch: tansu (the
    embedded broker) answers ListOffsets(latest) with the last *batch's* base offset + 1, which undercounts
    when producers batch records.
    """
    partitions = list(consumer.assignment())
    if not partitions:
        return None
    try:
        ends = consumer.end_offsets(partitions, timeout_ms=LAG_TIMEOUT_MS)
        lag = 0
        for tp in partitions:
            position = consumer.position(tp, timeout_ms=LAG_TIMEOUT_MS)
            end = max(ends.get(tp) or 0, consumer.highwater(tp) or 0)
            if position is not None:
                lag += max(0, end - position)
        return lag
    except KafkaError as error:
        log.debug("lag unavailable: %s", error)
        return None


class ConsumerStats:
    """Accumulates batch results and reports them every ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.model_version: str | None = None  # of the newest batch written
        self._reset(time.monotonic())

    def _reset(self, now: float) -> None:
        self._since = now
        self.messages = 0
        self.batches = 0
        self.score_ms = 0.0

    def add(self, result: BatchResult) -> None:
        self.messages += result.records
        self.batches += 1
        self.score_ms += result.score_ms
        self.model_version = result.model_version or self.model_version

    def due(self) -> bool:
        return time.monotonic() - self._since >= self.interval_s

    def report(self, lag: int | None) -> float:
        """Logs the stats line and starts a new interval; returns the interval's messages per second."""
        now = time.monotonic()
        elapsed = max(now - self._since, 1e-9)
        batches = max(self.batches, 1)
        log.info("stats: %.1f msg/s, %d batches, batch size %.1f, scoring %.1f ms/batch, lag %s",
                 self.messages / elapsed, self.batches, self.messages / batches, self.score_ms / batches,
                 "unknown" if lag is None else lag)
        rate = self.messages / elapsed
        self._reset(now)
        return rate
