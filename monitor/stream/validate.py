"""Turns a raw Kafka record value into a :class:`NewsIn` or a :class:`Rejection` naming what is wrong.

Never raises on input: a stream must not stop because one producer sent garbage. Rejected records go to the
dead-letter topic (:mod:`monitor.stream.dead_letter`) with the rejection's kind and detail as headers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from schemas.news import NewsIn

log = logging.getLogger(__name__)

RejectionKind = Literal["empty", "oversized", "not_utf8", "not_json", "not_object", "schema",
                        "conflicting_duplicate", "score_failed", "db_rejected", "crash_loop"]
Stage = Literal["validate", "score", "store", "process"]
DETAIL_MAX_CHARS = 300


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record cannot be scored. ``detail`` is one line, safe to put in a Kafka header or a log."""

    kind: RejectionKind
    detail: str
    stage: Stage = "validate"


def one_line(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """Collapse whitespace runs (newlines included) and cap the length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def summarise_validation_error(error: ValidationError) -> str:
    """``field: message`` of the first problem, plus how many more there are."""
    problems = error.errors()
    if not problems:
        return "invalid message"
    first = problems[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "message"
    text = f"{location}: {first.get('msg', 'invalid')}"
    if len(problems) > 1:
        text += f" (+{len(problems) - 1} more)"
    return one_line(text)


def validate_value(value: bytes | None, max_bytes: int) -> NewsIn | Rejection:
    """Parse and check one record value against the :class:`NewsIn` contract."""
    if not value:
        return Rejection("empty", "record has no value (null or zero bytes)")
    if len(value) > max_bytes:
        return Rejection("oversized", f"{len(value)} bytes is more than the {max_bytes}-byte limit "
                                      "(FINPULSE_MAX_MESSAGE_BYTES)")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejection("not_utf8", one_line(f"invalid UTF-8 at byte {error.start}: {error.reason}"))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        return Rejection("not_json", one_line(f"not JSON: {error}"))
    if not isinstance(data, dict):
        return Rejection("not_object", f"expected a JSON object, found a JSON {type(data).__name__}")
    try:
        return NewsIn.model_validate(data)
    except ValidationError as error:
        return Rejection("schema", summarise_validation_error(error))
    except Exception as error:  # a validator bug must dead-letter the record, not stop the stream
        log.exception("unexpected error validating a record")
        return Rejection("schema", one_line(f"{type(error).__name__}: {error}"))
