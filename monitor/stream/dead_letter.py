"""Publishes rejected records to the dead-letter topic: original bytes and key, the reason in headers.

Delivery is confirmed (acks=all, flush, every future checked) before :meth:`DeadLetterPublisher.flush` returns,
and the consumer commits source offsets only after that: a crash can duplicate a dead letter, never lose one.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from monitor.core.errors import FinpulseError
from monitor.core.settings import Settings
from monitor.stream.records import KafkaRecord, coordinates
from monitor.stream.validate import Rejection

log = logging.getLogger(__name__)

HEADER_ERROR = "finpulse.error"
HEADER_DETAIL = "finpulse.error.detail"
HEADER_TOPIC = "finpulse.source.topic"
HEADER_PARTITION = "finpulse.source.partition"
HEADER_OFFSET = "finpulse.source.offset"
HEADER_TIMESTAMP = "finpulse.source.timestamp"
FLUSH_TIMEOUT_S = 60.0


class DeadLetterError(FinpulseError):
    """The dead-letter topic did not acknowledge a record; the batch must not be committed."""


def dead_letter_headers(record: KafkaRecord, rejection: Rejection) -> list[tuple[str, bytes]]:
    return [
        (HEADER_ERROR, rejection.kind.encode()),
        (HEADER_DETAIL, rejection.detail.encode("utf-8")),
        (HEADER_TOPIC, record.topic.encode()),
        (HEADER_PARTITION, str(record.partition).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
        (HEADER_TIMESTAMP, str(record.timestamp).encode()),
    ]


class DeadLetterPublisher:
    """Sends rejected records asynchronously; :meth:`flush` waits for every acknowledgement."""

    def __init__(self, settings: Settings, producer: Any | None = None) -> None:
        self.topic = settings.kafka_dead_letter_topic
        # The value is forwarded unchanged, so the request limit must fit whatever the source topic accepted
        # (oversized records are dead-lettered too); the broker's own limit still applies.
        self._producer = producer or KafkaProducer(
            **settings.kafka_client_config(),
            acks="all",
            linger_ms=5,
            max_request_size=max(8 * 1024 * 1024, 2 * settings.max_message_bytes),
            client_id="finpulse-dead-letter",
        )
        self._pending: list[tuple[str, Any]] = []
        self.sent = 0

    def send(self, record: KafkaRecord, rejection: Rejection) -> None:
        log.warning("%s: dead-lettered (%s: %s)", coordinates(record), rejection.kind, rejection.detail)
        future = self._producer.send(
            self.topic, value=record.value, key=record.key, headers=dead_letter_headers(record, rejection)
        )
        self._pending.append((coordinates(record), future))

    def flush(self) -> int:
        """Block until the broker acknowledged every record sent since the last flush; return their number."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, []
        self._producer.flush(timeout=FLUSH_TIMEOUT_S)
        for where, future in pending:
            try:
                future.get(timeout=FLUSH_TIMEOUT_S)
            except KafkaError as error:
                raise DeadLetterError(
                    f"{where}: the dead-letter topic {self.topic} did not acknowledge the record "
                    f"({type(error).__name__}: {error}); check the broker and that the topic exists"
                ) from None
        self.sent += len(pending)
        return len(pending)

    def close(self) -> None:
        self._producer.close(timeout=FLUSH_TIMEOUT_S)
