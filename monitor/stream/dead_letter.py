"""Publishes rejected records to the dead-letter topic: original bytes and key, the reason in headers.

Delivery is confirmed (acks=all, flush, every future checked) before :meth:`DeadLetterPublisher.flush` returns,
and the consumer commits source offsets only after that: a crash can duplicate a dead letter, never lose one.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from monitor.core.errors import FinpulseError
from monitor.core.settings import Settings
from monitor.stream.records import KafkaRecord, coordinates
from monitor.stream.validate import Rejection

log = logging.getLogger(__name__)

HEADER_ERROR = "finpulse.error"
HEADER_DETAIL = "finpulse.error.detail"
HEADER_STAGE = "finpulse.error.stage"
HEADER_TOPIC = "finpulse.source.topic"
HEADER_PARTITION = "finpulse.source.partition"
HEADER_OFFSET = "finpulse.source.offset"
HEADER_TIMESTAMP = "finpulse.source.timestamp"
FLUSH_TIMEOUT_S = 30.0
SEND_TIMEOUT_S = 10.0


class DeadLetterError(FinpulseError):
    """The dead-letter topic did not acknowledge a record; the batch must not be committed."""


def dead_letter_headers(record: KafkaRecord, rejection: Rejection) -> list[tuple[str, bytes]]:
    return [
        (HEADER_ERROR, rejection.kind.encode()),
        (HEADER_DETAIL, rejection.detail.encode("utf-8")),
        (HEADER_STAGE, rejection.stage.encode()),
        (HEADER_TOPIC, record.topic.encode()),
        (HEADER_PARTITION, str(record.partition).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
        (HEADER_TIMESTAMP, str(record.timestamp).encode()),
    ]


@dataclass
class _Letter:
    record: KafkaRecord
    rejection: Rejection
    future: Any = None


class DeadLetterPublisher:
    """Sends rejected records asynchronously; :meth:`flush` waits for every acknowledgement.

    A letter the broker did not acknowledge is kept and sent again by the next :meth:`flush`, on a new producer:
    a producer that lost its broker (a restart of the embedded broker forgets producer ids and sequence
    numbers) can stay wedged on ``OutOfOrderSequenceNumberError``/``UnknownProducerIdError`` for ever. The
    producer is not idempotent for the same reason; a duplicate dead letter is harmless, a lost one is not.
    """

    def __init__(self, settings: Settings, producer: Any | None = None) -> None:
        self.settings = settings
        self.topic = settings.kafka_dead_letter_topic
        self._producer: Any | None = producer or self._new_producer()
        self._pending: list[_Letter] = []
        self.sent = 0

    def _new_producer(self) -> Any:
        # The value is forwarded unchanged, so the request limit must fit whatever the source topic accepted
        # (oversized records are dead-lettered too); the broker's own limit still applies.
        return KafkaProducer(
            **self.settings.kafka_client_config(),
            acks="all",
            linger_ms=5,
            enable_idempotence=False,
            max_block_ms=int(SEND_TIMEOUT_S * 1000),  # send() waits this long for metadata, then fails
            request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
            delivery_timeout_ms=int(FLUSH_TIMEOUT_S * 1000),
            max_request_size=max(8 * 1024 * 1024, 2 * self.settings.max_message_bytes),
            client_id="finpulse-dead-letter",
        )

    def send(self, record: KafkaRecord, rejection: Rejection) -> None:
        log.warning("%s: dead-lettered at %s (%s: %s)", coordinates(record), rejection.stage, rejection.kind,
                    rejection.detail)
        letter = _Letter(record, rejection)
        self._pending.append(letter)
        self._send(letter)

    def _send(self, letter: _Letter) -> None:
        if self._producer is None:
            return
        try:
            letter.future = self._producer.send(self.topic, value=letter.record.value, key=letter.record.key,
                                                headers=dead_letter_headers(letter.record, letter.rejection))
        except KafkaError as error:  # no metadata within max_block_ms: the broker is away; flush() retries
            letter.future = None
            log.debug("dead letter for %s not sent yet: %s", coordinates(letter.record), error)

    def flush(self) -> int:
        """Block until the broker acknowledged every letter sent since the last flush; return their number.

        Raises :class:`DeadLetterError` (the letters are kept and resent by the next call) when some were not."""
        if not self._pending:
            return 0
        if self._producer is None:
            self._restart()
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                self._producer.flush(timeout=FLUSH_TIMEOUT_S)
        failed: list[tuple[_Letter, str]] = []
        for letter in self._pending:
            try:
                if letter.future is None:
                    raise KafkaTimeoutError("not sent: no broker metadata")
                letter.future.get(timeout=FLUSH_TIMEOUT_S)
            except KafkaError as error:
                failed.append((letter, f"{type(error).__name__}: {error}"))
        acknowledged = len(self._pending) - len(failed)
        self.sent += acknowledged
        if not failed:
            self._pending = []
            return acknowledged
        self._pending = [letter for letter, _ in failed]
        self._restart()
        first, why = failed[0]
        raise DeadLetterError(f"{coordinates(first.record)} and {len(failed) - 1} more: the dead-letter topic "
                              f"{self.topic} did not acknowledge ({why}); retrying on a new producer")

    def _restart(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=0)
            self._producer = None
        try:
            self._producer = self._new_producer()
        except KafkaError as error:  # broker still away: keep the letters, the next flush tries again
            log.debug("dead-letter producer not restarted yet: %s", error)
            return
        for letter in self._pending:
            self._send(letter)

    def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=FLUSH_TIMEOUT_S)
