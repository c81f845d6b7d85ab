"""Social-media markup that the NER head must not report as entities.

Tweets carry URLs (``https://t.co/x1Y2``), retweet markers (``RT @user:``) and @mentions. The tokenizer splits
them into word pieces that the NER head, trained mostly on prose, tags as organisations: "t", "rt" and "t.co"
then showed up as the busiest ORGs of a StockNet replay. Spans inside such markup, and spans with fewer than two
letters or digits, are dropped from what the model reports (the predictor and ``finpulse eval`` alike).
The text itself reaches the model unchanged, exactly as in training, so document sentiment is unaffected.

Cashtags (``$AAPL``) are found by a rule, not by the model: serving reports them as TICKER entities scored by the
entity head, and distillation gives the entity head the teacher's sentiment on the same spans.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

MARKUP_RE = re.compile(
    r"https?://\S+"  # URLs
    r"|\b(?:www\.|t\.co/|bit\.ly/)\S*"  # scheme-less links
    r"|(?<![\w@])@\w+"  # @mentions (not e-mail addresses)
    r"|\bRT\b(?=\s*@)"  # the retweet marker before its @user
)
MIN_ALNUM = 2

Span = TypeVar("Span", bound=tuple[int, int, str])


def markup_ranges(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in MARKUP_RE.finditer(text)]


def drop_markup_entities(text: str, spans: Sequence[Span]) -> list[Span]:
    """``spans`` (start, end, type, ...) without those overlapping markup or too short to be a name."""
    markup = markup_ranges(text)
    kept = []
    for span in spans:
        start, end = span[0], span[1]
        if sum(char.isalnum() for char in text[start:end]) < MIN_ALNUM:
            continue
        if any(s < end and start < e for s, e in markup):
            continue
        kept.append(span)
    return kept


CASHTAG_RE = re.compile(r"\$([A-Za-z][A-Za-z0-9]{0,9}(?:[.\-][A-Za-z]{1,4})?)\b")


def find_cashtags(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, SYMBOL)`` of each distinct cashtag, first occurrence only, in text order."""
    seen: set[str] = set()
    out = []
    for match in CASHTAG_RE.finditer(text):
        symbol = match.group(1).upper()
        if symbol not in seen:
            seen.add(symbol)
            out.append((match.start(), match.end(), symbol))
    return out
