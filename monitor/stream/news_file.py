"""Reads news from CSV or JSON-lines files into :class:`NewsIn`, with column mapping and auto-detection.

Columns not named explicitly are detected from common names (``headline``/``title``/``text``,
``published_at``/``created_at_utc``/..., ``tickers``/``ticker``/...), so both finpulse's own corpus JSONL and the
StockNet tweet stream CSV read with no flags. Only :class:`NewsIn` fields are kept: label fields such as
``sentiment`` or ``entities`` in a training corpus are dropped. A bad row raises :class:`DataError` naming
``file:line`` unless ``skip_bad`` is set (then it is counted).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.core.errors import DataError
from monitor.stream.validate import summarise_validation_error
from schemas.news import NewsIn
from schemas.types import utcnow

log = logging.getLogger(__name__)

CANDIDATES: dict[str, tuple[str, ...]] = {
    "id": ("id", "news_id", "tweet_id", "uuid", "guid"),
    "headline": ("headline", "title", "text"),
    "published_at": ("published_at", "created_at_utc", "created_at", "published", "date", "datetime",
                     "timestamp", "time"),
    "tickers": ("tickers", "ticker", "symbols", "symbol", "stock"),
    "source": ("source", "publisher", "feed"),
    "body": ("body", "content", "summary", "description"),
    "url": ("url", "link"),
    "language": ("language", "lang"),
}


@dataclass(frozen=True)
class ColumnMap:
    """Input column for each NewsIn field (None = auto-detect); ``source_name`` when no source column."""

    id: str | None = None
    headline: str | None = None
    published_at: str | None = None
    tickers: str | None = None
    source: str | None = None
    body: str | None = None
    url: str | None = None
    language: str | None = None
    source_name: str | None = None

    def resolved(self, available: Iterable[str]) -> ColumnMap:
        """Fill unset columns with the first candidate name present in ``available``."""
        names = set(available)
        found = {f: next((c for c in CANDIDATES[f] if c in names), None)
                 for f in CANDIDATES if getattr(self, f) is None}
        return replace(self, **found)


@dataclass(frozen=True, slots=True)
class FileRow:
    line: int
    news: NewsIn


@dataclass
class ReadStats:
    rows: int = 0
    bad: int = 0
    merged: int = 0
    first_bad: str | None = None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _timestamp(value: Any) -> Any:
    """Epoch seconds (or milliseconds) become aware UTC datetimes; strings go to the contract as they are."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    return value


def to_news(record: Mapping[str, Any], columns: ColumnMap, default_source: str, restamp: bool = False) -> NewsIn:
    """Map one record to the contract; raises ValueError/ValidationError for a bad row."""
    data: dict[str, Any] = {}
    for field in fields(ColumnMap):
        column = getattr(columns, field.name)
        if field.name == "source_name" or column is None or _blank(record.get(column)):
            continue
        data[field.name] = record[column]
    if "headline" not in data:
        raise ValueError(f"no headline text (column {columns.headline or 'headline/title/text'} is missing or empty)")
    if "published_at" not in data and restamp:
        data["published_at"] = utcnow()  # replaced again at send time; the file has no time column
    if "published_at" not in data:
        raise ValueError(f"no time (column {columns.published_at or 'published_at/created_at_utc'} is missing "
                         "or empty); pass --time-col or --restamp")
    data["published_at"] = _timestamp(data["published_at"])
    data.setdefault("source", columns.source_name or default_source)
    if "id" in data:
        data["id"] = str(data["id"])
    else:  # a stable id from the content, so replaying the same file twice is idempotent downstream
        content = f"{data['source']}|{data['published_at']}|{data['headline']}".encode()
        digest = hashlib.sha1(content, usedforsecurity=False).hexdigest()  # an id, not a signature: same digest
        data["id"] = digest[:20]
    return NewsIn.model_validate(data)


def _records(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
    """(line, record) pairs; a string record is the reason the line could not be parsed."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8-sig") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    item = json.loads(text)
                except ValueError as error:
                    yield number, f"not JSON ({error})"
                    continue
                yield number, item if isinstance(item, dict) else f"expected a JSON object, found {type(item).__name__}"
        return
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield reader.line_num, row


def check_columns(path: Path, columns: ColumnMap, header: Iterable[str]) -> None:
    """An explicitly named column must exist: a typo should not read as one bad row per line."""
    names = [name for name in header if name is not None]
    for field in fields(ColumnMap):
        column = getattr(columns, field.name)
        if field.name != "source_name" and column is not None and column not in names:
            raise DataError(f"{path}: no column {column!r} for {field.name}; the header has {names}")


def read_news(path: Path, columns: ColumnMap, *, skip_bad: bool = False, restamp: bool = False,
              stats: ReadStats | None = None) -> Iterator[FileRow]:
    """Valid rows of ``path`` as :class:`NewsIn`, in file order."""
    stats = stats if stats is not None else ReadStats()
    if not path.is_file():
        raise DataError(f"{path}: no such file; give a CSV or JSON-lines file of news")
    default_source = path.stem
    resolved: ColumnMap | None = None
    try:
        for line, record in _records(path):
            try:
                if isinstance(record, str):
                    raise ValueError(record)
                if resolved is None and path.suffix.lower() == ".csv":
                    check_columns(path, columns, record.keys())
                if resolved is None or path.suffix.lower() != ".csv":
                    resolved = columns.resolved(record.keys())  # JSON lines may differ in optional keys
                news = to_news(record, resolved, default_source, restamp)
            except (ValueError, ValidationError) as error:
                reason = summarise_validation_error(error) if isinstance(error, ValidationError) else str(error)
                where = f"{path}:{line}: {reason}"
                if not skip_bad:
                    raise DataError(f"{where}; fix the row or pass --skip-bad") from None
                stats.bad += 1
                stats.first_bad = stats.first_bad or where
                log.debug("skipped %s", where)
                continue
            stats.rows += 1
            yield FileRow(line, news)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); convert it to UTF-8") \
            from None
    except csv.Error as error:
        raise DataError(f"{path}: malformed CSV ({error}); check quoting") from None


def merge_same_instant(rows: Iterable[FileRow], stats: ReadStats | None = None) -> Iterator[FileRow]:
    """Merge rows that repeat a news id at the same instant, uniting their tickers.

    Datasets such as StockNet list a tweet once per ticker it mentions; as separate messages the consumer
    would keep only the first and lose the other tickers. Rows are merged only within a run of equal
    ``published_at`` values, so memory stays bounded for time-sorted files.
    """
    group: dict[str, FileRow] = {}
    instant: datetime | None = None
    for row in rows:
        if row.news.published_at != instant:
            yield from group.values()
            group, instant = {}, row.news.published_at
        earlier = group.get(row.news.id)
        if earlier is None:
            group[row.news.id] = row
            continue
        tickers = earlier.news.tickers + [t for t in row.news.tickers if t not in earlier.news.tickers]
        group[row.news.id] = FileRow(earlier.line, earlier.news.model_copy(update={"tickers": tickers[:50]}))
        if stats is not None:
            stats.merged += 1
    yield from group.values()
