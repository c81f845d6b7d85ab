"""Class-prior correction of the two sentiment heads, fitted on the validation data after training.

Cross-entropy training on imbalanced data (TFNS is 65% neutral) leaves the heads leaning to the majority class,
which costs macro-F1 on the minority classes. Adding a per-class offset to the logits moves the decision
boundaries without touching the encoder; the offsets that maximise validation macro-F1 are found by a grid search
and folded into the heads' output biases, so the saved model needs no extra file and serves as before.

Offsets are relative to neutral (a common shift changes nothing). They are kept only when they raise validation
macro-F1 by at least ``MIN_GAIN``; among equally good offsets the smallest is chosen, which keeps the
correction conservative on small validation sets.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from finetune.evaluate import Collected
from finetune.model import MultitaskModel
from schemas.prediction import SENTIMENT_LABELS

log = logging.getLogger(__name__)

GRID = np.round(np.arange(-1.5, 1.5001, 0.05), 4)  # natural-log units: exp(1.5) = 4.5x the odds
MIN_GAIN = 0.002
MIN_EXAMPLES = 50  # fewer labelled validation items than this: too noisy to fit offsets on
MIN_PER_CLASS = 10  # a class (almost) absent from validation has F1 0 whatever the offsets: the search would
# learn to suppress it, and the served model would stop predicting it
NEUTRAL = SENTIMENT_LABELS.index("neutral")


@dataclass
class Offsets:
    """Per-class logit offsets (order of SENTIMENT_LABELS) and the validation macro-F1 before and after."""

    bias: list[float]
    macro_f1_before: float
    macro_f1_after: float
    n: int
    applied: bool


def macro_f1(gold: np.ndarray, predicted: np.ndarray, classes: int = len(SENTIMENT_LABELS)) -> float:
    matrix = np.bincount(gold * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    tp = np.diag(matrix).astype(float)
    denominator = matrix.sum(0) + matrix.sum(1)  # predicted + gold per class; F1 = 2 tp / (predicted + gold)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1.mean())


def log_probs(probs: Sequence[Sequence[float]]) -> np.ndarray:
    """Log-probabilities, which equal the logits up to a per-row constant (so offsets on them act like biases)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def fit_offsets(probs: Sequence[Sequence[float]], gold: Sequence[str]) -> Offsets:
    """The offsets (added to the logits, i.e. to the log-probabilities) that maximise macro-F1 on ``probs``."""
    labels = np.array([SENTIMENT_LABELS.index(g) for g in gold], dtype=np.int64)
    logp = log_probs(probs)
    before = macro_f1(labels, logp.argmax(1)) if len(labels) else 0.0
    none = Offsets([0.0, 0.0, 0.0], before, before, len(labels), applied=False)
    if len(labels) < MIN_EXAMPLES or np.bincount(labels, minlength=len(SENTIMENT_LABELS)).min() < MIN_PER_CLASS:
        return none
    others = [i for i in range(len(SENTIMENT_LABELS)) if i != NEUTRAL]
    best = (before, 0.0, (0.0, 0.0))  # (score, -size, offsets)
    for first in GRID:
        shifted = logp.copy()
        shifted[:, others[0]] += first
        for second in GRID:
            shifted[:, others[1]] = logp[:, others[1]] + second
            candidate = (macro_f1(labels, shifted.argmax(1)), -(abs(first) + abs(second)), (first, second))
            if candidate[:2] > best[:2]:
                best = candidate
    score, _, (first, second) = best
    if score - before < MIN_GAIN:
        return none
    bias = [0.0, 0.0, 0.0]
    bias[others[0]], bias[others[1]] = float(first), float(second)
    return Offsets(bias, before, score, len(labels), applied=True)


def calibrate(model: MultitaskModel, seen: Collected) -> dict[str, dict[str, object]]:
    """Fits and folds offsets into the document- and entity-sentiment heads; returns what was done per head."""
    heads = {"sentiment": (model.sentiment_head, seen.doc_probs, [g for g, _, _ in seen.doc]),
             "entity_sentiment": (model.entity_head[-1], seen.entity_probs, [g for g, _, _ in seen.entity])}
    done: dict[str, dict[str, object]] = {}
    for name, (layer, probs, gold) in heads.items():
        if not isinstance(layer, torch.nn.Linear) or layer.bias is None:
            log.warning("%s head does not end in a Linear layer with a bias; not calibrated", name)
            continue
        offsets = fit_offsets(probs, gold)
        if offsets.applied:
            with torch.no_grad():
                layer.bias.add_(torch.tensor(offsets.bias, dtype=layer.bias.dtype, device=layer.bias.device))
        log.info("%s calibration on %d validation items: offsets %s, macro-F1 %.4f -> %.4f (%s)", name, offsets.n,
                 [round(b, 2) for b in offsets.bias], offsets.macro_f1_before, offsets.macro_f1_after,
                 "applied" if offsets.applied else "not applied")
        done[name] = asdict(offsets)
    return done


def _shifted(rows: list[tuple[str, str, float]], probs: list[list[float]],
             bias: Sequence[float]) -> tuple[list[tuple[str, str, float]], list[list[float]]]:
    logits = log_probs(probs) + np.asarray(bias)
    new_probs = np.exp(logits - logits.max(1, keepdims=True))
    new_probs /= new_probs.sum(1, keepdims=True)
    best = new_probs.argmax(1)
    new_rows = [(gold, SENTIMENT_LABELS[int(b)], float(p[b])) for (gold, _, _), b, p in zip(rows, best, new_probs,
                                                                                           strict=True)]
    return new_rows, new_probs.tolist()


def recalibrated(seen: Collected, done: dict[str, dict[str, object]]) -> Collected:
    """What ``seen`` would have been with the fitted offsets in the heads, without another pass over the data:
    softmax(log p + bias) is the softmax of the shifted logits; NER is untouched by calibration."""
    out = copy.copy(seen)
    for name, rows_attr, probs_attr in (("sentiment", "doc", "doc_probs"),
                                        ("entity_sentiment", "entity", "entity_probs")):
        head = done.get(name)
        if head and head["applied"] and getattr(seen, probs_attr):
            bias = head["bias"]
            assert isinstance(bias, list)  # nosec B101 # narrows the type of our own calibration record
            rows, probs = _shifted(getattr(seen, rows_attr), getattr(seen, probs_attr), bias)
            setattr(out, rows_attr, rows)
            setattr(out, probs_attr, probs)
    return out
