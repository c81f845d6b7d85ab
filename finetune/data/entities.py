"""Sources with entity-level labels: finpulse's own JSON lines and SEntFiN.

(The ``labelled_news`` table, which has them too, is read by :mod:`finetune.data.labelled`.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune.data.rows import jsonl_rows
from finetune.data.splits import normalize_text, stable_fraction
from finetune.examples import NER_TYPE_ALIASES, Example, Span, check_span, normalize_sentiment
from monitor.core.errors import DataError

log = logging.getLogger(__name__)


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    return list(jsonl_rows(path))


def entity_spans(text: str, entities: object, where: str) -> list[Span]:
    """``[{start, end, type, text?, sentiment?}]`` -> spans. Types other than ORG/PER/LOC (e.g. TICKER) keep their
    sentiment but are untyped for NER (cashtags are found by a rule at inference)."""
    if not isinstance(entities, list):
        raise DataError(f"{where}: 'entities' must be a list of {{start, end, type, sentiment}} objects")
    spans = []
    for i, entity in enumerate(entities):
        at = f"{where}: entities[{i}]"
        if not isinstance(entity, dict):
            raise DataError(f"{at}: expected an object with start, end, type, sentiment")
        start, end = check_span(text, entity.get("start"), entity.get("end"), at, entity.get("text"))
        kind = NER_TYPE_ALIASES.get(str(entity.get("type") or "").upper())
        raw = entity.get("sentiment")
        sentiment = None if raw is None else normalize_sentiment(raw, {}, at)
        spans.append(Span(start, end, kind, sentiment))
    return spans


def read_finpulse(path: Path) -> list[Example]:
    """finpulse JSON lines: ``headline`` (or ``text``), optional ``sentiment``, optional ``entities``. A record
    with an ``entities`` list is a complete NER annotation; without one, NER is masked for it."""
    out = []
    for number, record in _records(path):
        where = f"{path}:{number}"
        text = record.get("headline", record.get("text"))
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: missing 'headline' (a non-empty string); found keys {sorted(record)}")
        raw = record.get("sentiment")
        sentiment = None if raw is None else normalize_sentiment(raw, {}, where)
        has_entities = record.get("entities") is not None
        spans = entity_spans(text, record["entities"], where) if has_entities else []
        out.append(Example(text, sentiment, spans, ner=has_entities, source="finpulse", where=where))
    return out


def silver_span(title: str, entity: str, taken: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """Where ``entity`` occurs in ``title``: whole-word, case-insensitive, preferring a match that does not
    overlap spans already placed (so "Tata" and "Tata Motors" in one title get different places)."""
    patterns = [rf"(?<!\w){re.escape(entity)}(?!\w)", re.escape(entity)]
    fallback = None
    for pattern in patterns:
        for match in re.finditer(pattern, title, flags=re.IGNORECASE):
            span = (match.start(), match.end())
            if not any(s < span[1] and span[0] < e for s, e in taken):
                return span
            fallback = fallback or span
    return fallback


def in_part(title: str, part: str, heldout: float, seed: int) -> bool:
    """Whether a SEntFiN title falls in ``part`` of the seeded split; entity and document examples share it."""
    return part == "all" or (stable_fraction(normalize_text(title), seed) < heldout) == (part == "heldout")


def _check_part(path: Path, part: str) -> None:
    if part not in ("all", "train", "heldout"):
        raise DataError(f"{path}: sentfin option part={part!r}; expected all, train or heldout")


def _title_and_entities(record: dict[str, Any], where: str) -> tuple[str, list[Any]]:
    title, entities = record.get("title"), record.get("entities")
    if not isinstance(title, str) or not isinstance(entities, list):
        raise DataError(f"{where}: expected {{'title': str, 'entities': [{{'entity', 'sentiment'}}]}}, "
                        f"found keys {sorted(record)}")
    return title, entities


def read_sentfin(path: Path, part: str = "all", heldout: float = 0.2, seed: int = 0) -> list[Example]:
    """SEntFiN derived JSON lines ``{s_no, title, entities: [{entity, sentiment}]}``. Spans are silver: the entity
    string matched in the title; unmatched entities are skipped. ``part`` picks a split fixed by ``seed`` in which
    duplicate titles stay together (``heldout`` is the held-out fraction). NER and document sentiment are masked:
    entities are untyped and only the labelled ones are marked."""
    _check_part(path, part)
    out, unmatched = [], 0
    for number, record in _records(path):
        where = f"{path}:{number}"
        title, entities = _title_and_entities(record, where)
        if not in_part(title, part, heldout, seed):
            continue
        spans: list[Span] = []
        for i, item in enumerate(sorted(entities, key=lambda e: -len(str(e.get("entity", ""))))):
            if not isinstance(item, dict) or not isinstance(item.get("entity"), str):
                raise DataError(f"{where}: entities[{i}] must be {{'entity': str, 'sentiment': str}}")
            sentiment = normalize_sentiment(item.get("sentiment"), {}, f"{where}: entity {item['entity']!r}")
            found = silver_span(title, item["entity"], [(s.start, s.end) for s in spans])
            if found is None:
                unmatched += 1
                continue
            spans.append(Span(found[0], found[1], None, sentiment))
        if spans:
            spans.sort(key=lambda s: s.start)
            out.append(Example(title, None, spans, ner=False, source="sentfin", where=where))
    if unmatched:
        log.info("%s: %d entities not found in their title were skipped", path, unmatched)
    return out


def read_sentfin_documents(path: Path, part: str = "all", heldout: float = 0.2, seed: int = 0) -> list[Example]:
    """SEntFiN headlines as document-sentiment examples (``sentfin=FILE?doc=true``): a headline whose labelled
    entities all share one sentiment gets that sentiment; one with conflicting entity sentiments is skipped, since
    it has no single document label. Duplicate titles (same normalized text) become one example, and are skipped
    when their labels disagree. The split is :func:`in_part`, the one the entity examples use, so a held-out
    headline is held out of both tasks. No spans: combine with ``sentfin=FILE`` for the entity labels."""
    _check_part(path, part)
    labels: dict[str, set[str]] = {}
    first: dict[str, tuple[str, str]] = {}  # normalized title -> (title, where) of its first occurrence
    for number, record in _records(path):
        where = f"{path}:{number}"
        title, entities = _title_and_entities(record, where)
        if not entities or not in_part(title, part, heldout, seed):
            continue
        key = normalize_text(title)
        first.setdefault(key, (title, where))
        for i, item in enumerate(entities):
            raw = item.get("sentiment") if isinstance(item, dict) else None
            if raw is None:
                raise DataError(f"{where}: entities[{i}] must be {{'entity': str, 'sentiment': str}}")
            labels.setdefault(key, set()).add(normalize_sentiment(raw, {}, f"{where}: entities[{i}]"))
    out = [Example(first[key][0], next(iter(found)), source="sentfin", where=first[key][1])
           for key, found in labels.items() if len(found) == 1]
    if len(out) < len(labels):
        log.info("%s: %d headlines with conflicting entity sentiments skipped (no single document label)",
                 path, len(labels) - len(out))
    return out
