"""Prediction distributions and the Jensen-Shannon divergence between two of them.

A distribution summarises a set of predictions: the share of each predicted label and a histogram of the
confidence (the top probability) in ``CONFIDENCE_BINS`` equal bins over [0, 1]. JS divergence is taken in base 2,
so it lies in [0, 1] (0: identical, 1: disjoint) and one threshold fits both comparisons.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from schemas.prediction import SENTIMENT_LABELS

log = logging.getLogger(__name__)

CONFIDENCE_BINS = 10


def normalized(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("a distribution needs a positive total")
    return [float(c) / total for c in counts]


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence (base 2) of two discrete distributions over the same bins (counts allowed)."""
    if len(p) != len(q):
        raise ValueError(f"distributions have {len(p)} and {len(q)} bins")
    p, q = normalized(p), normalized(q)

    def kl_to_mid(a: Sequence[float], b: Sequence[float]) -> float:
        # 0 * log(0 / m) = 0; where a > 0 the midpoint is > 0, so no smoothing is needed.
        return sum(x * math.log2(x / ((x + y) / 2)) for x, y in zip(a, b, strict=True) if x > 0)

    value = 0.5 * kl_to_mid(p, q) + 0.5 * kl_to_mid(q, p)
    return min(1.0, max(0.0, value))  # clamp float noise


def confidence_bin(confidence: float, bins: int = CONFIDENCE_BINS) -> int:
    return min(max(int(confidence * bins), 0), bins - 1)


def distribution(sentiments: Iterable[str], confidences: Iterable[float]) -> dict[str, Any]:
    """``{"n", "labels": {label: share}, "confidence_bins": [share per bin]}`` of a set of predictions."""
    labels = dict.fromkeys(SENTIMENT_LABELS, 0)
    for sentiment in sentiments:
        labels[sentiment] += 1
    bins = [0] * CONFIDENCE_BINS
    for confidence in confidences:
        bins[confidence_bin(confidence)] += 1
    n = sum(labels.values())
    if n != sum(bins):
        raise ValueError("as many sentiments as confidences are needed")
    return {
        "n": n,
        "labels": {k: (v / n if n else 0.0) for k, v in labels.items()},
        "confidence_bins": [b / n if n else 0.0 for b in bins],
    }


def compare(reference: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[float, float]:
    """(label JS, confidence JS) between two :func:`distribution` results."""
    label_js = js_divergence([reference["labels"][k] for k in SENTIMENT_LABELS],
                             [current["labels"][k] for k in SENTIMENT_LABELS])
    confidence_js = js_divergence(reference["confidence_bins"], current["confidence_bins"])
    return label_js, confidence_js
