"""Turns an analyst's decision into a ``labelled_news`` row, validated the way training will read it.

The label row names the signed-in account and its role (training and the gold set use labels of analysts and
admins only), and the audit trail records it. Entity spans go through ``finetune.data.entities.entity_spans``
(the reader of this very table), so a label the dashboard accepts is a label the next retraining can use.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from dashboards.queries.training import QueueItem
from finetune.data.entities import entity_spans
from monitor.core import audit
from monitor.core.accounts import Principal, require
from monitor.core.db import session_scope
from monitor.core.errors import DataError
from schemas.prediction import SENTIMENT_LABELS
from schemas.registry import LabelledNews
from schemas.signals import ENTITY_TYPES

log = logging.getLogger(__name__)

EDITOR_COLUMNS = ["text", "type", "sentiment", "start", "end"]


def editor_rows(item: QueueItem) -> list[dict[str, Any]]:
    """The model's entities as editable rows (text, type, sentiment, start, end)."""
    rows = []
    for entity in item.entities:
        start, end = entity.get("start"), entity.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(item.text)):
            continue  # a span the model placed outside the stored text cannot be confirmed
        kind = str(entity.get("type") or "ORG").upper()
        sentiment = entity.get("sentiment")
        rows.append({"text": item.text[start:end], "type": kind if kind in ENTITY_TYPES else "ORG",
                     "sentiment": sentiment if sentiment in SENTIMENT_LABELS else None, "start": start, "end": end})
    return rows


def _int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(number) if number == number and number.is_integer() else None


def build_entities(text: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Editor rows -> ``[{start, end, type, text, sentiment}]``. Rows without text are dropped; a row without
    valid offsets is placed at the first unused occurrence of its text. DataError names the row on a problem."""
    out: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        surface = str(row.get("text") or "").strip()
        if not surface or surface == "nan":
            continue
        kind = str(row.get("type") or "").strip().upper()
        if kind not in ENTITY_TYPES:
            raise DataError(f"entity row {number} ({surface!r}): type must be one of {', '.join(ENTITY_TYPES)}")
        sentiment = row.get("sentiment")
        sentiment = None if sentiment in (None, "", "nan") or sentiment != sentiment else str(sentiment)
        if sentiment is not None and sentiment not in SENTIMENT_LABELS:
            raise DataError(f"entity row {number} ({surface!r}): sentiment must be one of "
                            f"{', '.join(SENTIMENT_LABELS)} or empty")
        start, end = _int(row.get("start")), _int(row.get("end"))
        if start is None or end is None or text[start:end] != surface:
            start = _free_occurrence(text, surface, out)
            if start is None:
                raise DataError(f"entity row {number}: {surface!r} does not occur in the text; "
                                "copy it exactly as written there")
            end = start + len(surface)
        out.append({"start": start, "end": end, "type": kind, "text": surface, "sentiment": sentiment})
    out.sort(key=lambda entity: (entity["start"], entity["end"]))
    for before, after in itertools.pairwise(out):
        if after["start"] < before["end"]:
            raise DataError(f"entities {before['text']!r} and {after['text']!r} overlap; keep one of them")
    entity_spans(text, out, "label")  # the training reader's own check of offsets and quoted text
    return out


def _free_occurrence(text: str, surface: str, taken: list[dict[str, Any]]) -> int | None:
    start = text.find(surface)
    while start >= 0:
        if not any(start < other["end"] and other["start"] < start + len(surface) for other in taken):
            return start
        start = text.find(surface, start + 1)
    return None


def save_label(engine: Engine, item: QueueItem, sentiment: str, entities: list[dict[str, Any]], *,
               by: Principal) -> int:
    """Insert the label as ``by`` (checked here: its role must allow labelling), with its audit row in the same
    transaction; DataError if the story was labelled meanwhile (by another analyst or tab)."""
    require(by, "label")
    if sentiment not in SENTIMENT_LABELS:
        raise DataError(f"document sentiment must be one of {', '.join(SENTIMENT_LABELS)}, found {sentiment!r}")
    with session_scope(engine) as session:
        existing = session.exec(select(LabelledNews).where(col(LabelledNews.news_id) == item.news_id)).first()
        if existing is not None:
            raise DataError(f"story {item.news_id} was already labelled by {existing.labelled_by}; "
                            "it has left the queue")
        row = LabelledNews(news_id=item.news_id, text=item.text, sentiment=sentiment, entities=entities,
                           labelled_by=by.name, labeller_role=by.role)
        session.add(row)
        session.flush()
        assert row.id is not None  # nosec B101 # narrows the type: flush() has set the id
        label_id = row.id
        audit.record(session, by, "label.create", f"label {label_id} of story {item.news_id}", None,
                     {"news_id": item.news_id, "sentiment": sentiment, "entities": entities})
    log.info("label %d saved for story %s by %s (%s, %d entities)", label_id, item.news_id, by.name, sentiment,
             len(entities))
    return label_id
