"""What the consumer reads from Kafka: the fields finpulse uses of a kafka-python ``ConsumerRecord``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from schemas.types import utcnow


class KafkaRecord(Protocol):
    """The subset of ``kafka.consumer.fetcher.ConsumerRecord`` that finpulse reads (kafka-python is untyped)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def coordinates(record: KafkaRecord) -> str:
    """``topic[partition]@offset``, the form every log line about one record uses."""
    return f"{record.topic}[{record.partition}]@{record.offset}"


def record_time(record: KafkaRecord) -> datetime:
    """The record's Kafka timestamp as an aware UTC datetime (now, if the producer set none)."""
    if record.timestamp is None or record.timestamp < 0:
        return utcnow()
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)
