"""Writes a versioned model directory: weights, tokenizer, encoder config, manifest, args, metrics, model card.

The directory is assembled under a hidden temporary name and renamed into place, so a watcher (the consumer polling
for a new champion) never sees a half-written model.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from finetune.card_tests import tests_section
from finetune.examples import BIO_LABELS, NER_TYPES
from finetune.model import MultitaskModel
from finetune.model_dir import FORMAT_VERSION, MANIFEST
from monitor.core.errors import ConfigError
from schemas.prediction import SENTIMENT_LABELS

log = logging.getLogger(__name__)


def new_version(models_dir: Path, now: datetime | None = None) -> str:
    """``vYYYYMMDD-HHMMSS`` (UTC), with a suffix if that name is taken."""
    base = (now or datetime.now(UTC)).strftime("v%Y%m%d-%H%M%S")
    version, n = base, 1
    while (models_dir / version).exists():
        n += 1
        version = f"{base}-{n}"
    return version


def manifest(version: str, base_model: str, max_length: int) -> dict[str, Any]:
    return {
        "kind": "multitask",
        "format_version": FORMAT_VERSION,
        "version": version,
        "base_model": base_model,
        "max_length": max_length,
        "labels": {
            "sentiment": list(SENTIMENT_LABELS),
            "ner": list(BIO_LABELS),
            "entity_sentiment": list(SENTIMENT_LABELS),
        },
        "heads": {
            "sentiment": "masked mean pooling -> linear",
            "ner": "token linear, BIO over " + "/".join(NER_TYPES) + "; cashtags -> TICKER by rule at inference",
            "entity_sentiment": "span mean pooling + document vector -> MLP",
        },
    }


def save_version(model: MultitaskModel, tokenizer: PreTrainedTokenizerBase, models_dir: Path, version: str, *,
                 base_model: str, max_length: int, train_args: dict[str, Any], metrics: dict[str, Any],
                 data_summary: dict[str, Any],
                 prepare: Callable[[Path], dict[str, Any]] | None = None,
                 extras: dict[str, Callable[[Path], dict[str, Any]]] | None = None) -> Path:
    """Write the version into a hidden staging folder, then rename it: a version directory is complete or absent.
    ``prepare(staging)`` adds serving artefacts (the ONNX export) before the rename; what it returns is recorded
    as ``onnx`` in the manifest and in metrics.json. Each of ``extras`` (e.g. ``peft``: the LoRA adapter) writes
    its files into the staging folder too, and what it returns is recorded under its key in the manifest."""
    target = models_dir / version
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another --version")
    staging = models_dir / f".{version}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save(staging)
    tokenizer.save_pretrained(staging)
    info = manifest(version, base_model, max_length)
    if metrics.get("distillation"):  # the teacher and the settings; its validation numbers stay in metrics.json
        info["distillation"] = {k: v for k, v in metrics["distillation"].items() if k != "teacher_validation"}
    for key, write in (extras or {}).items():
        info[key] = write(staging)
    if prepare is not None:
        serving = prepare(staging)
        info["onnx"] = {k: v for k, v in serving.items() if k != "validation"}
        metrics = {**metrics, "onnx": {"validation": serving.get("validation"), "int8_gate": serving["int8_gate"]}}
    _write_json(staging / MANIFEST, info)
    _write_json(staging / "training_args.json", train_args)
    _write_json(staging / "metrics.json", metrics)
    (staging / "README.md").write_text(model_card(info, train_args, metrics, data_summary), encoding="utf-8")
    staging.rename(target)
    log.info("saved model %s to %s", version, target)
    return target


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _calibration_note(calibration: dict[str, Any] | None) -> str:
    if not calibration or not any(done.get("applied") for done in calibration.values()):
        return "No class-prior calibration (none fitted, or it did not raise validation macro-F1)."
    parts = []
    for head, done in calibration.items():
        if done.get("applied"):
            parts.append(f"{head}: logit offsets {[round(b, 2) for b in done['bias']]} (validation macro-F1 "
                         f"{_fmt(done['macro_f1_before'])} -> {_fmt(done['macro_f1_after'])})")
        else:
            parts.append(f"{head}: none (no gain on validation)")
    return ("Class-prior calibration, fitted on the validation data and folded into the heads' biases (so the "
            "validation numbers above are optimistic): " + "; ".join(parts) + ".")


def _onnx_note(onnx: dict[str, Any] | None) -> str:
    if not onnx:
        return "No ONNX export (trained with --no-onnx); one is made in fp32 on the first ONNX Runtime load."
    gate = onnx.get("int8_gate") or {}
    served = "`model.int8.onnx` (int8) is served on ONNX Runtime" if gate.get("passed") else \
        "`model.onnx` (fp32) is served on ONNX Runtime; no int8"
    return (f"ONNX export: `model.onnx` (fp32) and `entity_head.onnx`, SHA-256 in `finpulse_model.json`. {served}: "
            f"{gate.get('reason', 'no gate record')}. Gate metrics of both: `metrics.json` (`onnx`).")


def _peft_note(peft: dict[str, Any] | None) -> str:
    if not peft:
        return ""
    return (f"\nTrained with LoRA (rank {peft['rank']}, alpha {peft['alpha']}) on {', '.join(peft['targets'])}, "
            f"heads in full, from `{peft.get('parent_version') or peft.get('parent_path') or peft['base_model']}`; "
            f"the adapters are merged into `model.safetensors`. The adapter (`{peft['adapter_file']}`, "
            f"{peft['adapter_bytes'] / 1e6:.2f} MB, heads included) applied to that parent with "
            "`peft.PeftModel.from_pretrained` gives the same model.")


def _distillation_note(distillation: dict[str, Any] | None) -> str:
    if not distillation:
        return ""
    teacher = distillation["teacher"]
    numbers = "; ".join(f"{task} {key} {_fmt(values[key])}" for task, key in (
        ("sentiment", "macro_f1"), ("ner", "f1"), ("entity_sentiment", "macro_f1"))
        if key in (values := distillation.get("teacher_validation", {}).get(task, {})))
    return (f"\n\nDistilled from the teacher `{teacher['version']}` (base model `{teacher['base_model']}`, "
            f"`{teacher['path']}`): per head, alpha {distillation['alpha']} x the hard-label loss + "
            f"(1 - alpha) x T^2 x KL to the teacher's soft targets at temperature T = {distillation['temperature']}, "
            f"on {distillation['examples']} examples ({distillation['unlabelled_examples']} unlabelled, soft targets "
            f"only). The teacher on the same validation data: {numbers or 'not measured'}.")


def rewrite_records(path: Path, metrics: dict[str, Any]) -> None:
    """Replace a saved version's metrics.json and model card (``finpulse train --preset`` adds the stage timings
    after the student is saved, before it is registered), each by an atomic rename."""
    info = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    train_args = json.loads((path / "training_args.json").read_text(encoding="utf-8"))
    card = model_card(info, train_args, metrics, train_args.get("data_summary") or {})
    for name, text in (("metrics.json", json.dumps(metrics, indent=2, sort_keys=True, default=str) + "\n"),
                       ("README.md", card)):
        staged = path / f".{name}.tmp"
        staged.write_text(text, encoding="utf-8")
        staged.replace(path / name)


def _casing_note(casing: bool | None) -> str:
    if casing is None:  # trained before casing existed
        return ""
    return ("Reads casing: each token's casing class (lower, Title, ALL CAPS, ...) is added to its word embedding, "
            "since the encoder lowercases its input (`finetune/casing.py`)." if casing else
            "Does not read casing (trained with `--no-casing`): the encoder sees lowercased text only.")


def model_card(info: dict[str, Any], train_args: dict[str, Any], metrics: dict[str, Any],
               data_summary: dict[str, Any]) -> str:
    validation = metrics.get("validation", {})
    rows = []
    for task, key in (("sentiment", "macro_f1"), ("sentiment", "accuracy"), ("sentiment", "ece"),
                      ("ner", "f1"), ("ner", "precision"), ("ner", "recall"),
                      ("entity_sentiment", "macro_f1"), ("entity_sentiment", "accuracy")):
        if key in validation.get(task, {}):
            rows.append(f"| {task} | {key} | {_fmt(validation[task][key])} |")
    sources = "\n".join(f"- `{spec}`: {count}" for spec, count in data_summary.get("sources", {}).items())
    tasks = ", ".join(f"{task} {n}" for task, n in data_summary.get("train_tasks", {}).items())
    distilled = _distillation_note(metrics.get("distillation"))
    return f"""---
library_name: finpulse
base_model: {info['base_model']}
tags: [finance, sentiment, ner, multitask]
---

# finpulse multi-task model `{info['version']}`

One transformer encoder with three heads, served from one forward pass:

1. document sentiment ({', '.join(info['labels']['sentiment'])}); signed score = P(positive) - P(negative);
2. named entities, BIO tags for {', '.join(NER_TYPES)}; cashtags such as `$AAPL` are added as TICKER by a rule;
3. sentiment of each entity, from the entity span's pooled token states (two entities of one headline can differ).

## Base model
`{info['base_model']}`, fine-tuned with max length {info['max_length']} tokens.{distilled}
{_casing_note(train_args.get('casing'))}

## Training data
{sources or '- (none recorded)'}

Training examples: {data_summary.get('train', '?')} ({tasks});
validation examples: {data_summary.get('validation', '?')}.
Tasks a source does not label are masked out of the loss.

## Validation metrics (best checkpoint)
| task | metric | value |
|---|---|---|
{chr(10).join(rows) or '| - | - | - |'}

Steps: {metrics.get('steps')}, epochs: {_fmt(metrics.get('epochs'))}, precision: {metrics.get('precision')},
device: {metrics.get('device')}, training time: {_fmt(metrics.get('train_seconds'))} s.
{_calibration_note(metrics.get('calibration'))}
{tests_section(metrics)}
## Serving engines
{_onnx_note(info.get('onnx'))}
{_peft_note(info.get('peft'))}

## Use
`finpulse consume` with `FINPULSE_MODEL_DIR` set to this directory, or
`monitor.scoring.scorer.load_scorer(Path(...)).score(["..."])`. Evaluate with `finpulse eval --model DIR --data ...`.
Weights are safetensors only. Training arguments: `training_args.json` (seed {train_args.get('seed')}).

## Limitations
Trained on the sources above only; headlines unlike them (other markets, languages, long articles) are scored
less reliably. Entity sentiment on silver (string-matched) spans; NER data may be small and out of domain.
"""
