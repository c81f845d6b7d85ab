"""Data sources for training and evaluation: the ``--data KIND=PATH[?opt=value&...]`` syntax and the readers.

Kinds (each becomes a list of :class:`finetune.examples.Example`):

* ``csv`` / ``jsonl`` - one text and one document-sentiment label per row (options ``text``, ``label``,
  ``label_map``; defaults from ``--text-column``, ``--label-column``, ``--label-map``).
* ``tfns`` - Twitter Financial News Sentiment CSV: ``csv`` with ``label_map=0=negative,1=positive,2=neutral``.
* ``conll`` - CoNLL BIO or IO NER file (:mod:`finetune.data.conll`), e.g. SEC NER or FiNER-ORD; option ``max_words``.
* ``finpulse`` - finpulse's own JSON lines (headline, sentiment, typed entity spans with sentiment).
* ``sentfin`` - SEntFiN entity-sentiment JSON lines; options ``part=all|train|heldout``, ``heldout=0.2``, ``seed=0``.
  ``doc=true`` reads the headlines instead as document-sentiment examples (those whose entities all share one
  sentiment), on the same seeded split, so ``part=heldout`` stays out of training for both tasks.
* ``db`` - the ``labelled_news`` table; the value is a database URL or ``default`` (FINPULSE_DATABASE_URL).
* ``text`` - unlabelled text for distillation (``--teacher``); options ``column``, ``max_rows``, ``seed``, ``lang``
  (:mod:`finetune.data.text`).

Every file source also takes ``weight=W``: each of its examples is seen W times per training epoch on average
(2 = twice, 0.5 = a random half each epoch), to balance large and small sources.

Example: ``--data tfns=../shared/data/tfns/sent_train.csv --data 'sentfin=FILE?part=train'
--data 'sentfin=FILE?part=train&doc=true' --data conll=../shared/data/finer_ord/finer_ord_train.conll``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.data.conll import read_conll
from finetune.data.entities import read_finpulse, read_sentfin, read_sentfin_documents
from finetune.data.labelled import read_labelled_news
from finetune.data.rows import csv_rows, jsonl_rows
from finetune.data.text import OPTIONS as TEXT_OPTIONS
from finetune.data.text import read_text
from finetune.examples import Example, normalize_sentiment, parse_label_map
from monitor.core.errors import DataError

log = logging.getLogger(__name__)

KINDS = ("csv", "jsonl", "tfns", "conll", "finpulse", "sentfin", "db", "text")
OPTIONS = {
    "csv": {"text", "label", "label_map", "weight"},
    "jsonl": {"text", "label", "label_map", "weight"},
    "tfns": {"weight"},
    "conll": {"max_words", "weight"},
    "finpulse": {"weight"},
    "sentfin": {"part", "heldout", "seed", "doc", "weight"},
    "db": set(),
    "text": TEXT_OPTIONS,
}
TFNS_LABEL_MAP = "0=negative,1=positive,2=neutral"


@dataclass(frozen=True)
class DataSpec:
    kind: str
    path: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any]) -> DataSpec:
        """``KIND=PATH[?key=value&key=value]`` (a string) or ``{kind, path, **options}`` (a config mapping)."""
        if isinstance(spec, Mapping):
            options = {str(k): str(v) for k, v in spec.items() if k not in ("kind", "path")}
            return cls._checked(str(spec.get("kind", "")), str(spec.get("path", "")), options, str(dict(spec)))
        kind, sep, rest = spec.partition("=")
        if not sep:
            raise DataError(f"--data {spec!r}: expected KIND=PATH with KIND one of {', '.join(KINDS)}")
        if kind.strip() == "db":  # a database URL has its own '?query'
            return cls._checked("db", rest, {}, spec)
        path, _, query = rest.partition("?")
        options = {}
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            if not eq:
                raise DataError(f"--data {spec!r}: option {item!r} is not key=value")
            options[key.strip()] = value.strip()
        return cls._checked(kind.strip(), path, options, spec)

    @classmethod
    def _checked(cls, kind: str, path: str, options: dict[str, str], spec: str) -> DataSpec:
        if kind not in KINDS:
            raise DataError(f"--data {spec!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if not path:
            raise DataError(f"--data {spec!r}: the path is empty; expected {kind}=PATH")
        unknown = sorted(set(options) - OPTIONS[kind])
        if unknown:
            allowed = ", ".join(sorted(OPTIONS[kind])) or "none"
            raise DataError(f"--data {spec!r}: unknown option(s) {unknown} for {kind} (allowed: {allowed})")
        return cls(kind, path, options)

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.kind}={self.path}" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class ColumnDefaults:
    """Defaults for ``csv``/``jsonl`` sources that do not name their own columns or label map."""

    text_column: str = "text"
    label_column: str = "label"
    label_map: str | None = None


def load_source(spec: DataSpec, defaults: ColumnDefaults = ColumnDefaults()) -> list[Example]:
    """Read one source into examples. Raises DataError (one line, naming file and line) on bad input."""
    if spec.kind == "db":
        return read_labelled_news(spec.path)
    path = Path(spec.path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: file not found (from --data {spec})")
    if spec.kind == "conll":
        return read_conll(path, max_words=int(spec.options.get("max_words", "40")))
    if spec.kind == "finpulse":
        return read_finpulse(path)
    if spec.kind == "text":
        return read_text(path, spec.options, defaults.text_column)
    if spec.kind == "sentfin":
        reader = read_sentfin_documents if _flag(spec, "doc") else read_sentfin
        return reader(path, part=spec.options.get("part", "all"),
                      heldout=float(spec.options.get("heldout", "0.2")), seed=int(spec.options.get("seed", "0")))
    text_col = spec.options.get("text", defaults.text_column)
    label_col = spec.options.get("label", defaults.label_column)
    map_text = TFNS_LABEL_MAP if spec.kind == "tfns" else spec.options.get("label_map", defaults.label_map)
    label_map = parse_label_map(map_text, where=f"--data {spec}")
    rows = csv_rows(path) if spec.kind in ("csv", "tfns") else jsonl_rows(path)
    return _labelled_text(path, rows, text_col, label_col, label_map, source=spec.kind)


def load_sources(specs: list[DataSpec], defaults: ColumnDefaults = ColumnDefaults()) -> list[Example]:
    out: list[Example] = []
    for spec in specs:
        examples = load_source(spec, defaults)
        if "weight" in spec.options:
            weight = _positive_float(spec.options["weight"], f"--data {spec}: weight")
            for example in examples:
                example.weight = weight
        log.info("%s: %d examples", spec, len(examples))
        out.extend(examples)
    return out


def _flag(spec: DataSpec, name: str) -> bool:
    value = spec.options.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise DataError(f"--data {spec}: {name}={value!r}; expected true or false")
    return value in ("true", "1", "yes")


def _positive_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DataError(f"{what}={text!r}; expected a number > 0")
    return value


def _labelled_text(path: Path, rows: Iterator[tuple[int, Mapping[str, Any]]], text_col: str, label_col: str,
                   label_map: dict[str, str], source: str) -> list[Example]:
    out, blank = [], 0
    for number, row in rows:
        where = f"{path}:{number}"
        for column in (text_col, label_col):
            if column not in row:
                raise DataError(f"{where}: missing column {column!r} (found {sorted(row)}); "
                                "set --text-column/--label-column or the source's text=/label= option")
        text = str(row[text_col] or "").strip()
        if not text:
            blank += 1
            continue
        sentiment = normalize_sentiment(row[label_col], label_map, where)
        out.append(Example(text=text, sentiment=sentiment, source=source, where=where))
    if blank:
        log.warning("%s: skipped %d rows with an empty %r", path, blank, text_col)
    if not out:
        raise DataError(f"{path}:1: no labelled rows; expected a header and at least one row")
    return out


