"""Crash bookkeeping of the consumer: which span of a partition was being processed when the process died.

A message that kills the process itself (the tokenizer running out of memory, a native crash) never reaches an
``except`` clause, so the consumer records each batch's span *before* scoring it and clears the record in the
same transaction that stores the batch. A record that is still there when a consumer next reads that partition
means the previous attempt died: the span is then retried one message at a time, and a single message that has
died ``FINPULSE_POISON_MAX_CRASHES`` times is dead-lettered as ``crash_loop`` (see
:mod:`monitor.stream.crash_guard`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from schemas.types import UTCDateTime, utcnow


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempt"

    topic: str = Field(primary_key=True, max_length=255)
    partition: int = Field(primary_key=True)
    first_offset: int = Field(sa_type=BigInteger, description="First offset of the span being processed.")
    last_offset: int = Field(sa_type=BigInteger, description="Last offset of the span being processed.")
    crashes: int = Field(default=0, description="Attempts on this exact span that never finished.")
    isolate_until: int = Field(default=-1, sa_type=BigInteger,
                               description="Offsets up to here are processed one at a time (after a crash).")
    member: str = Field(max_length=200, description="host:pid that made the attempt.")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
