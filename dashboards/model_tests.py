"""The Models page's view of each version's test sets (``metrics.tests``, written by ``finpulse train --test-data``
and ``--preset``): a compact column for the registry table and a per-set table for the version's expander."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

# (task, metric, short label for the compact column, column title of the per-set table)
MAIN = (("sentiment", "macro_f1", "sent", "sentiment macro-F1"), ("ner", "f1", "NER", "NER F1"),
        ("entity_sentiment", "macro_f1", "entity", "entity macro-F1"))
RECALL = ("negative", "neutral", "positive")


def _tests(metrics: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    tests = (metrics or {}).get("tests")
    return {str(name): result for name, result in tests.items() if isinstance(result, dict)} \
        if isinstance(tests, dict) else {}


def _number(result: dict[str, Any], task: str, key: str) -> float | None:
    value = (result.get(task) or {}).get(key)
    return round(float(value), 4) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _main_numbers(result: dict[str, Any]) -> str:
    return ", ".join(f"{short} {value:.3f}" for task, key, short, _ in MAIN
                     if (value := _number(result, task, key)) is not None)


def heldout_summary(metrics: dict[str, Any] | None) -> str:
    """``tfns_valid sent 0.837 · finer_ord_valid NER 0.801``: the main number of each task of each test set."""
    return " · ".join(f"{name} {numbers}" for name, result in _tests(metrics).items()
                      if (numbers := _main_numbers(result))) or "-"


def heldout_table(metrics: dict[str, Any] | None) -> pd.DataFrame | None:
    """One row per test set: examples, the main numbers, per-class sentiment recall and the ONNX-served numbers."""
    rows = []
    for name, result in _tests(metrics).items():
        row: dict[str, Any] = {"test set": name, "examples": result.get("examples")}
        for task, key, _, title in MAIN:
            row[title] = _number(result, task, key)
        recall = (result.get("sentiment") or {}).get("recall") or {}
        for label in RECALL:
            row[f"recall {label}"] = round(float(recall[label]), 4) if label in recall else None
        onnx = result.get("onnx") or {}
        row["ONNX served"] = str(onnx.get("error", "-")) if not onnx or "error" in onnx else \
            f"{onnx.get('precision')}: {_main_numbers(onnx) or '-'}"
        row["source"] = result.get("spec")
        rows.append(row)
    return pd.DataFrame(rows) if rows else None
