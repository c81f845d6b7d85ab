"""Offset commits that follow the database, and survive a broker that is away for a while.

Offsets are committed only for batches whose rows (and dead letters) are stored. A commit the broker does not
take is kept and retried (merged with the next batch's offsets, or on its own every second), never raised:
the rows are stored, so the worst a lost commit costs is a re-read that inserts nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from monitor.stream.rebalance import names

log = logging.getLogger(__name__)

RETRY_EVERY_S = 1.0
Partition = tuple[str, int]


class OffsetCommits:
    def __init__(self, on_committed: Callable[[dict[Partition, int]], None]) -> None:
        self._on_committed = on_committed
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self._next_retry = 0.0

    @property
    def behind(self) -> bool:
        """Some stored batch's offsets still wait for the broker."""
        return bool(self._uncommitted)

    def commit(self, consumer: Any, next_offsets: dict[Partition, int]) -> bool:
        """Commit ``next_offsets`` (and any earlier ones still owed); True when the broker took them."""
        offsets = {**self._uncommitted, **{TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                           for (t, p), o in next_offsets.items()}}
        if not offsets:
            return True
        try:
            consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError) as error:
            # The group moved on while we wrote; the rows are stored, so whoever reads these records again
            # finds their ids present and inserts nothing. Dead letters of this batch may be sent twice.
            log.warning("offset commit for %s failed after the batch was written (%s); the next owner re-reads "
                        "it without duplicating rows", names(offsets), type(error).__name__)
            self._uncommitted = {}
            return True
        except KafkaError as error:
            if not self._uncommitted:
                log.warning("offset commit for %s failed (%s: %s); the rows are stored, retrying the commit",
                            names(offsets), type(error).__name__, error)
            self._uncommitted = offsets
            self._next_retry = time.monotonic() + RETRY_EVERY_S
            return False
        if self._uncommitted:
            log.info("owed offset commit for %s went through", names(self._uncommitted))
        self._uncommitted = {}
        self._on_committed({(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()})
        return True

    def retry_due(self, consumer: Any) -> bool | None:
        """Retry an owed commit if one is due; None when nothing was tried."""
        if not self._uncommitted or time.monotonic() < self._next_retry:
            return None
        return self.commit(consumer, {})

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Revoked partitions: their next owner commits them."""
        gone = set(partitions)
        self._uncommitted = {tp: meta for tp, meta in self._uncommitted.items() if (tp.topic, tp.partition) not in gone}
