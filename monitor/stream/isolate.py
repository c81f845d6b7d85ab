"""Scoring that survives a poison message: bisect a failing batch down to the texts that make the model fail.

A model that raises on one text (a tokenizer edge case, a pathological length) must not stop the stream, and a
model that is broken for *every* text must not dead-letter the stream. So on a failure the scorer is first asked
about a canary text it has always handled: if the canary fails too, the scorer is unavailable (the consumer
retries the batch with back-off, like a database outage); otherwise the batch is halved until each failing text
stands alone, and those are reported for the dead-letter topic as ``score_failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from monitor.core.errors import FinpulseError
from monitor.scoring.scorer import Scorer
from schemas.prediction import Prediction

log = logging.getLogger(__name__)

CANARY_TEXT = "Shares of the company were little changed in morning trading."


class ScorerUnavailable(FinpulseError):
    """The scorer fails on every text, the canary included: retry later, dead-letter nothing."""


def error_line(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first[:200]}"


def score_isolating(scorer: Scorer, texts: Sequence[str]) -> tuple[list[Prediction | None], dict[int, str]]:
    """Predictions in order (None where the text failed) and {index: error line} of the texts that failed."""
    try:
        return list(scorer.score(texts)), {}
    except Exception as error:  # noqa: BLE001 - any scorer error is isolated or turned into "unavailable"
        first_error = error
    try:
        scorer.score([CANARY_TEXT])
    except Exception as canary_error:  # noqa: BLE001
        raise ScorerUnavailable(f"the model fails even on a canary text ({error_line(canary_error)}); "
                                f"first failure: {error_line(first_error)}") from None
    predictions: list[Prediction | None] = [None] * len(texts)
    failures: dict[int, str] = {}
    _bisect(scorer, texts, list(range(len(texts))), predictions, failures, first_error)
    log.warning("scoring isolated %d of %d texts that make the model fail", len(failures), len(texts))
    return predictions, failures


def _bisect(scorer: Scorer, texts: Sequence[str], indexes: list[int], predictions: list[Prediction | None],
            failures: dict[int, str], known_error: BaseException | None) -> None:
    if known_error is None:
        try:
            for index, prediction in zip(indexes, scorer.score([texts[i] for i in indexes]), strict=True):
                predictions[index] = prediction
            return
        except Exception as error:  # noqa: BLE001
            known_error = error
    if len(indexes) == 1:
        failures[indexes[0]] = error_line(known_error)
        return
    middle = len(indexes) // 2
    _bisect(scorer, texts, indexes[:middle], predictions, failures, None)
    _bisect(scorer, texts, indexes[middle:], predictions, failures, None)
