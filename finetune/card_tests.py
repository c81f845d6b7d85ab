"""The model card's "Test sets" section: every ``--test-data`` set with its numbers, and, for a preset run, the
wall time of each stage and the teacher's numbers on the same sets beside the student's."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_RECALL_ORDER = ("negative", "neutral", "positive")


def _value(result: dict[str, Any] | None, task: str, key: str) -> str:
    values = (result or {}).get(task) or {}
    if key == "recall":
        recall = values.get("recall") or {}
        return " / ".join(f"{float(recall[label]):.3f}" for label in _RECALL_ORDER if label in recall) or "-"
    return f"{float(values[key]):.4f}" if key in values else "-"


def _rows(name: str, result: dict[str, Any], teacher: dict[str, Any] | None) -> list[str]:
    rows = []
    for task, key, label in (("sentiment", "macro_f1", "sentiment macro-F1"),
                             ("sentiment", "recall", "sentiment recall neg / neu / pos"),
                             ("ner", "f1", "NER entity F1"), ("entity_sentiment", "macro_f1", "entity macro-F1")):
        if key in (result.get(task) or {}):
            cells = [_value(result, task, key), _value(result.get("onnx"), task, key)]
            if teacher is not None:
                cells.append(_value(teacher, task, key))
            rows.append(f"| {name} | {result.get('examples', '?')} | {label} | {' | '.join(cells)} |")
    return rows


def _stage_line(stage: dict[str, Any]) -> str:
    how = "reused" if stage.get("reused") else f"{float(stage.get('wall_seconds') or 0):.1f} s wall"
    return f"- {stage['stage']}: `{stage.get('version')}` on `{stage.get('base_model')}`, {how}"


def tests_section(metrics: dict[str, Any]) -> str:
    """Markdown for the card (empty when the version has no test sets and no preset record)."""
    tests: dict[str, dict[str, Any]] = metrics.get("tests") or {}
    preset: dict[str, Any] = metrics.get("preset") or {}
    teacher_stage = next((s for s in preset.get("stages", []) if s.get("stage") == "teacher"), None)
    teacher_tests = (teacher_stage or {}).get("tests") or None
    parts = []
    if tests:
        first = next(iter(tests.values()))
        onnx = next((r["onnx"].get("precision") for r in tests.values() if r.get("onnx")), None)
        head = ["value (torch " + str(first.get("precision")) + ")", f"ONNX Runtime ({onnx or 'not exported'})"]
        head += ["teacher"] if teacher_tests is not None else []
        rows = [row for name, result in tests.items()
                for row in _rows(name, result, (teacher_tests or {}).get(name) if teacher_tests is not None else None)]
        sources = "\n".join(f"- `{name}`: `{result.get('spec')}`" for name, result in tests.items())
        parts.append(f"""
## Test sets (held out from training)
Scored after training with the saved model at the serving length ({first.get('max_length')} tokens); their texts
and near-duplicates were removed from the training data. Full reports: `metrics.json` (`tests`).

| test set | examples | metric | {' | '.join(head)} |
|---|---|---|{'---|' * len(head)}
{chr(10).join(rows) or '| - | - | - | - |'}

{sources}
""")
    if preset:
        stages = "\n".join(_stage_line(stage) for stage in preset.get("stages", []))
        parts.append(f"""
## Recipe
`finpulse train --preset {preset.get('name')}` from the data directory `{preset.get('data_dir')}`
({float(preset.get('wall_seconds') or 0):.1f} s wall in all):
{stages}
""")
    return "".join(parts)
