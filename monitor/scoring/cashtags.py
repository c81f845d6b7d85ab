"""Cashtags (``$AAPL``): a rule, not the model, finds them; every backend reports them as TICKER entities."""

from __future__ import annotations

import re

from schemas.prediction import EntityPrediction, Prediction

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


def cashtag_entities(text: str, document: Prediction) -> list[EntityPrediction]:
    """Cashtags (``$AAPL``) as TICKER entities carrying the document's sentiment (a rule, not the model)."""
    return [EntityPrediction(symbol, "TICKER", start, end, document.sentiment, document.probs, document.score,
                             document.confidence) for start, end, symbol in find_cashtags(text)]
