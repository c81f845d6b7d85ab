"""Rebalance bookkeeping of the consumer: which partitions were revoked since the last look."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from kafka import ConsumerRebalanceListener, TopicPartition

log = logging.getLogger(__name__)


class RevocationTracker(ConsumerRebalanceListener):  # type: ignore[misc]
    """Notes revoked/lost partitions. Runs on kafka-python's IO thread while ``poll()`` blocks the main one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revoked: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = set(revoked)
        if revoked:
            log.info("partitions revoked: %s", names(revoked))
        with self._lock:
            self._revoked |= revoked

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        self.on_partitions_revoked(lost)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("partitions assigned: %s", names(assigned))

    def take(self) -> set[TopicPartition]:
        with self._lock:
            revoked, self._revoked = self._revoked, set()
        return revoked


def names(partitions: Iterable[tuple[str, int]]) -> str:
    """``topic[p], ...`` for log lines (TopicPartition is a (topic, partition) tuple)."""
    return ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)) or "none"
