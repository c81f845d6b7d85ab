"""The one in-memory training example every data format is converted to, and the label sets of the three heads.

Every source becomes text plus character spans, so a single tokenizer pass (``finetune.features``) derives the
token labels for all tasks. A task a source does not label is marked missing and masked out of the loss:
``sentiment is None`` (no document label), ``ner is False`` (spans are not a complete NER annotation) and
``span.sentiment is None`` (no entity-level label).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from monitor.core.errors import DataError
from schemas.prediction import SENTIMENT_LABELS

log = logging.getLogger(__name__)

NER_TYPES: tuple[str, ...] = ("ORG", "PER", "LOC")
BIO_LABELS: tuple[str, ...] = ("O", *(f"{prefix}-{kind}" for kind in NER_TYPES for prefix in ("B", "I")))
IGNORE = -100  # label id that cross-entropy skips

# Spelling variants seen in public data sets, all mapped onto the model's three labels.
SENTIMENT_ALIASES = {
    "negative": "negative", "neg": "negative", "bearish": "negative",
    "neutral": "neutral", "neu": "neutral",
    "positive": "positive", "pos": "positive", "bullish": "positive",
}
# NER type names of common corpora -> the model's types. MISC and anything else is dropped (becomes O).
NER_TYPE_ALIASES = {
    "ORG": "ORG", "ORGANIZATION": "ORG", "ORGANISATION": "ORG",
    "PER": "PER", "PERSON": "PER",
    "LOC": "LOC", "LOCATION": "LOC", "GPE": "LOC",
}


@dataclass(frozen=True, slots=True)
class Span:
    """A character span ``text[start:end]``. ``type`` is ORG/PER/LOC for NER (None: untyped, e.g. a silver
    SEntFiN match or a TICKER); ``sentiment`` is the entity-level label (None: not labelled)."""

    start: int
    end: int
    type: str | None = None
    sentiment: str | None = None


@dataclass(slots=True)
class Example:
    text: str
    sentiment: str | None = None
    spans: list[Span] = field(default_factory=list)
    ner: bool = False  # True: the typed spans are the complete NER annotation of the text
    source: str = ""
    where: str = ""  # "file:line" for error messages and audits
    weight: float = 1.0  # expected copies per training epoch (a source's ?weight= option)

    @property
    def tasks(self) -> set[str]:
        out = set()
        if self.sentiment is not None:
            out.add("sentiment")
        if self.ner:
            out.add("ner")
        if any(span.sentiment is not None for span in self.spans):
            out.add("entity")
        return out


def sentiment_ids() -> dict[str, int]:
    return {label: i for i, label in enumerate(SENTIMENT_LABELS)}


def parse_label_map(text: str | None, where: str = "--label-map") -> dict[str, str]:
    """``0=negative,1=positive,2=neutral`` -> {"0": "negative", ...}; values may be any sentiment alias."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        raw, sep, label = item.partition("=")
        if not sep or not raw.strip():
            raise DataError(f"{where}: expected RAW=LABEL pairs like 0=negative,1=positive,2=neutral, found {item!r}")
        canonical = SENTIMENT_ALIASES.get(label.strip().lower())
        if canonical is None:
            raise DataError(f"{where}: label {label.strip()!r} is not negative/neutral/positive (in {item!r})")
        out[raw.strip()] = canonical
    return out


def normalize_sentiment(raw: object, label_map: dict[str, str], where: str) -> str:
    """Map a raw label through ``label_map`` (if given) or the known aliases; DataError naming ``where``."""
    key = str(raw).strip()
    if label_map:
        if key in label_map:
            return label_map[key]
        raise DataError(f"{where}: unknown label {key!r}; the label map knows {sorted(label_map)} "
                        "(fix the row or --label-map)")
    canonical = SENTIMENT_ALIASES.get(key.lower())
    if canonical is None:
        raise DataError(f"{where}: unknown label {key!r}; expected negative/neutral/positive "
                        "(numeric labels need --label-map, e.g. 0=negative,1=positive,2=neutral)")
    return canonical


def check_span(text: str, start: object, end: object, where: str, expected: object = None) -> tuple[int, int]:
    """Validate character offsets (and the quoted entity text when the record carries it)."""
    if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end <= len(text):
        raise DataError(f"{where}: entity offsets start={start!r} end={end!r} are not 0 <= start < end <= "
                        f"{len(text)} (the text length)")
    if isinstance(expected, str) and text[start:end] != expected:
        raise DataError(f"{where}: entity text {expected!r} does not match text[{start}:{end}] = "
                        f"{text[start:end]!r}; fix the offsets")
    return start, end
