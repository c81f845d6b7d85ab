"""Cashtags (``$AAPL``): a rule, not the model, finds them; every backend reports them as TICKER entities."""

from __future__ import annotations

# The rule itself lives in finetune.markup, where distillation also needs it (the teacher's entity targets cover
# the same spans serving scores); it is re-exported here for the scoring side.
from finetune.markup import CASHTAG_RE as CASHTAG_RE
from finetune.markup import find_cashtags as find_cashtags
from schemas.prediction import EntityPrediction, Prediction


def cashtag_entities(text: str, document: Prediction) -> list[EntityPrediction]:
    """Cashtags (``$AAPL``) as TICKER entities carrying the document's sentiment (a rule, not the model)."""
    return [EntityPrediction(symbol, "TICKER", start, end, document.sentiment, document.probs, document.score,
                             document.confidence) for start, end, symbol in find_cashtags(text)]
