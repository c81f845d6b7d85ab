"""Messages that kill the process: recognised after repeated crashes on the same offset, then dead-lettered.

An exception is isolated where it happens (:mod:`monitor.stream.isolate`, :mod:`monitor.stream.sink`), but a
message that kills the process (the kernel's OOM killer during tokenisation, a native crash) leaves no trace in
memory. So before a batch is scored, :class:`CrashGuard` writes, per partition, the span of offsets this process
has taken but not committed (``delivery_attempt``, one row per partition). A consumer that later re-reads a
partition and finds a span it did not write itself, covering the offset it is about to process, knows the
previous owner died there:

* the span is then processed **one message per batch** (``isolate_until``), and the consumer does not pipeline
  while isolating, so a crash is attributable to exactly one offset;
* a single message whose own attempt died ``FINPULSE_POISON_MAX_CRASHES`` times is dead-lettered as
  ``crash_loop`` (stage ``process``) and the stream moves on.

A partition handed over by a clean rebalance also leaves a span behind, so its next owner processes that span
one message at a time: slower for a moment, never wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from monitor.core.db import session_scope
from monitor.core.db_faults import DatabaseUnavailable, describe, is_outage
from monitor.stream.records import KafkaRecord
from schemas.delivery import DeliveryAttempt
from schemas.types import utcnow

log = logging.getLogger(__name__)

Partition = tuple[str, int]


@dataclass
class Admission:
    """What the guard lets into the next batch."""

    records: list[KafkaRecord] = field(default_factory=list)  # process these now
    deferred: dict[Partition, int] = field(default_factory=dict)  # seek back here: processed in later batches
    poisoned: list[tuple[KafkaRecord, int]] = field(default_factory=list)  # (record, crashes): dead-letter these
    isolating: bool = False  # some partition goes one message at a time: do not pipeline


class CrashGuard:
    def __init__(self, engine: Engine, max_crashes: int, member: str) -> None:
        self.engine, self.max_crashes, self.member = engine, max_crashes, member
        self._uncommitted_from: dict[Partition, int] = {}  # oldest offset taken but not committed, per partition
        self._marked_until: dict[Partition, int] = {}

    def admit(self, records: Sequence[KafkaRecord]) -> Admission:
        """Decide the batch and record the attempt (raises :class:`DatabaseUnavailable` on an outage)."""
        by_partition: dict[Partition, list[KafkaRecord]] = {}
        for record in records:
            by_partition.setdefault((record.topic, record.partition), []).append(record)
        admission = Admission()
        try:
            with session_scope(self.engine) as session:
                rows = {(row.topic, row.partition): row for row in session.exec(
                    select(DeliveryAttempt).where(col(DeliveryAttempt.topic).in_({t for t, _ in by_partition})))
                    if (row.topic, row.partition) in by_partition}
                for key, taken in by_partition.items():
                    row = rows.get(key) or DeliveryAttempt(topic=key[0], partition=key[1], first_offset=0,
                                                           last_offset=-1, member=self.member)
                    self._decide(row, taken, admission)
                    row.member, row.updated_at = self.member, utcnow()
                    session.add(row)
        except Exception as error:
            if is_outage(error):
                raise DatabaseUnavailable(describe(error)) from None
            raise
        return admission

    def _decide(self, row: DeliveryAttempt, taken: list[KafkaRecord], admission: Admission) -> None:
        key = (row.topic, row.partition)
        first, last = taken[0].offset, taken[-1].offset
        died_here = row.member != self.member and row.first_offset <= first <= row.last_offset
        isolate = died_here or first <= row.isolate_until
        if not isolate:
            admission.records += taken
            row.first_offset = min(self._uncommitted_from.setdefault(key, first), first)
            row.last_offset, row.crashes, row.isolate_until = last, 0, -1
            self._marked_until[key] = last
            return
        admission.isolating = True
        if len(taken) > 1:
            admission.deferred[key] = taken[1].offset
        crashes = row.crashes + 1 if died_here and row.first_offset == row.last_offset == first else 0
        if died_here and crashes == 0:
            log.warning("%s[%d]: a previous consumer died while processing offsets %d..%d; processing them one "
                        "at a time", row.topic, row.partition, row.first_offset, row.last_offset)
        row.isolate_until = max(row.isolate_until, row.last_offset if died_here else -1, first)
        if died_here and crashes >= self.max_crashes:
            admission.poisoned.append((taken[0], crashes))
            row.first_offset, row.last_offset, row.crashes = first + 1, first, 0  # nothing in progress
        else:
            admission.records.append(taken[0])
            row.first_offset, row.last_offset, row.crashes = first, first, crashes
        self._uncommitted_from.setdefault(key, first)
        self._marked_until[key] = first

    def committed(self, next_offsets: dict[Partition, int]) -> None:
        """Offsets were committed: what this process holds uncommitted now starts there."""
        for key, offset in next_offsets.items():
            if self._marked_until.get(key, -1) < offset:
                self._uncommitted_from.pop(key, None)
            else:
                self._uncommitted_from[key] = offset

    def forget(self, partitions: Iterable[Partition]) -> None:
        """The partitions were revoked: their records are abandoned and will be re-read by their next owner."""
        for key in partitions:
            self._uncommitted_from.pop(key, None)
            self._marked_until.pop(key, None)
