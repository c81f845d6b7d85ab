"""Evaluate a model *as served*: through :func:`monitor.scoring.scorer.load_scorer`, with the serving settings.

The gate compares champion and candidate with exactly the code path, precision and sequence length that the
consumer will use, so the numbers describe what users would get. The same pass yields the prediction
distribution that drift detection compares recent news against.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune.examples import Example
from finetune.metrics import classification
from monitor.core.settings import Settings
from monitor.lifecycle.drift_math import distribution
from monitor.scoring.scorer import Scorer, load_scorer

log = logging.getLogger(__name__)


def load_served(model_dir: Path, settings: Settings) -> Scorer:
    return load_scorer(model_dir, device=settings.device, precision=settings.precision, backend=settings.backend,
                       batch_size=settings.score_batch_size, max_length=settings.max_seq_length)


def evaluate_served(scorer: Scorer, examples: Sequence[Example]) -> dict[str, Any]:
    """Document-sentiment metrics on the examples that have a label, and the prediction distribution on all.

    ``macro_f1`` is None when no example has a document label."""
    if not examples:
        return {"n": 0, "macro_f1": None, "accuracy": None, "distribution": None}
    predictions = scorer.score([example.text for example in examples])
    pairs = [(e.sentiment, p.sentiment) for e, p in zip(examples, predictions, strict=True) if e.sentiment]
    out: dict[str, Any] = {
        "distribution": distribution([p.sentiment for p in predictions], [p.confidence for p in predictions]),
    }
    if not pairs:
        return {"n": 0, "macro_f1": None, "accuracy": None, **out}
    report = classification([g for g, _ in pairs], [p for _, p in pairs])
    return {
        "n": report["n"], "macro_f1": report["macro_f1"], "accuracy": report["accuracy"],
        "per_class_f1": {label: values["f1"] for label, values in report["per_class"].items()},
        "confusion_matrix": report["confusion_matrix"], **out,
    }


def reference_distribution(result: dict[str, Any], source: str) -> dict[str, Any] | None:
    """The entry stored as ``metrics["reference_distribution"]``: what drift detection compares against."""
    dist = result.get("distribution")
    if not dist or not dist.get("n"):
        return None
    return {"source": source, **dist}
