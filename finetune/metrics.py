"""Metrics: classification report with confusion matrix, expected calibration error, entity-level NER scores."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from schemas.prediction import SENTIMENT_LABELS

log = logging.getLogger(__name__)

_WORD_RE = re.compile(r"\S+")


def classification(gold: Sequence[str], predicted: Sequence[str],
                   labels: Sequence[str] = SENTIMENT_LABELS) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = gold)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g]][index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        predicted_n = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    total = len(gold)
    return {
        "n": total,
        "accuracy": sum(matrix[i][i] for i in range(len(labels))) / total if total else 0.0,
        # Macro over all labels (a label absent from gold and predictions counts 0), as sklearn with labels=...
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels),
        "per_class": per_class,
        # Per-class recall at the top level: the first thing to read when one class is under-predicted (news
        # positives coming out neutral); ``recall_gap`` is the largest |recall(c) - recall(neutral)| over c.
        "recall": {label: per_class[label]["recall"] for label in labels},
        "recall_gap": _recall_gap(per_class),
        "confusion_matrix": {"labels": list(labels), "rows_gold_columns_predicted": matrix},
    }


def _recall_gap(per_class: dict[str, dict[str, float]]) -> float | None:
    if "neutral" not in per_class:
        return None
    neutral = per_class["neutral"]["recall"]
    return max(abs(values["recall"] - neutral) for values in per_class.values())


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE with equal-width confidence bins: sum over bins of |accuracy - mean confidence| weighted by bin size."""
    if not confidences:
        return 0.0
    totals = [[0, 0.0, 0] for _ in range(bins)]  # count, confidence sum, correct count
    for confidence, hit in zip(confidences, correct, strict=True):
        slot = min(int(confidence * bins), bins - 1)
        totals[slot][0] += 1
        totals[slot][1] += confidence
        totals[slot][2] += int(hit)
    n = len(confidences)
    return sum(abs(c / k - s / k) * k / n for k, s, c in totals if k)


def word_tags(text: str, spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """BIO tags of the whitespace-separated words of ``text`` for character spans (a word overlapping a span is
    inside it). Gold and predicted spans both go through this, so seqeval compares them word by word."""
    tags = []
    previous: tuple[int, int, str] | None = None
    for match in _WORD_RE.finditer(text):
        hit = next((span for span in spans if span[0] < match.end() and match.start() < span[1]), None)
        if hit is None:
            tags.append("O")
        else:
            tags.append(f"{'I' if hit == previous else 'B'}-{hit[2]}")
        previous = hit
    return tags


def ner_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """Entity-level micro precision/recall/F1 (exact span and type match) and per type, from seqeval."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    if not gold:
        return {"n": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}
    report = classification_report(gold, predicted, output_dict=True, zero_division=0, mode="strict", scheme=IOB2)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        name: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
               "support": int(v["support"])}
        for name, v in report.items() if not name.endswith(" avg")
    }
    return {
        "n": len(gold), "entities": int(micro["support"]),
        "precision": float(micro["precision"]), "recall": float(micro["recall"]), "f1": float(micro["f1-score"]),
        "per_type": per_type,
    }
