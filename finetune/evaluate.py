"""Evaluate a multi-task model on examples: document sentiment, NER (seqeval), entity sentiment, calibration.

NER is scored on the spans the predictor would output (constrained Viterbi tags, :mod:`finetune.bio_decode`, then
:func:`finetune.features.decode_bio`), tagged word by word, so the number describes what users get; ``argmax_f1``
beside it is the per-token argmax's F1 on the same logits. Entity sentiment is scored on the gold spans, so it
measures the third head independently of NER mistakes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetune.bio_decode import constrained_tags, real_tokens
from finetune.casing import encoder_inputs
from finetune.device import resolve_device, resolve_dtype
from finetune.examples import Example
from finetune.features import decode_bio, token_range
from finetune.markup import drop_markup_entities
from finetune.metrics import classification, expected_calibration_error, ner_scores, word_tags
from finetune.model import MultitaskModel
from finetune.model_dir import check_multitask_dir
from finetune.onnx_model import OnnxMultitaskModel
from schemas.prediction import SENTIMENT_LABELS

log = logging.getLogger(__name__)

AnyModel = MultitaskModel | OnnxMultitaskModel  # the torch model, or its ONNX export on ONNX Runtime

SELECTION_METRICS = ("mean", "sentiment_macro_f1", "ner_f1", "entity_macro_f1")


class Collected:
    """What one pass over labelled examples saw; ``*_probs`` keep the probabilities for calibration."""

    def __init__(self) -> None:
        self.doc: list[tuple[str, str, float]] = []  # gold, predicted, confidence
        self.doc_probs: list[list[float]] = []
        self.entity_probs: list[list[float]] = []
        self.ner_gold: list[list[str]] = []
        self.ner_pred: list[list[str]] = []
        self.ner_pred_argmax: list[list[str]] = []  # per-token argmax, reported beside the served decoding
        self.entity: list[tuple[str, str, float]] = []
        self.entity_lost = 0


def evaluate(model: AnyModel, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
             max_length: int = 128, batch_size: int = 64, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Metrics for every task that ``examples`` label; tasks without labels are left out of the result."""
    return report(collect(model, tokenizer, examples, max_length=max_length, batch_size=batch_size, dtype=dtype))


def collect(model: AnyModel, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
            max_length: int = 128, batch_size: int = 64, dtype: torch.dtype | None = None) -> Collected:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    seen = Collected()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    with torch.inference_mode(), autocast:
        for start in range(0, len(order), batch_size):
            _batch([examples[i] for i in order[start:start + batch_size]], model, tokenizer, max_length, seen)
    model.train(was_training)
    return seen


def _batch(chunk: list[Example], model: AnyModel, tokenizer: PreTrainedTokenizerBase, max_length: int,
           seen: Collected) -> None:
    device = next(model.parameters()).device
    encoding = tokenizer([e.text for e in chunk], padding=True, truncation=True, max_length=max_length,
                         return_offsets_mapping=True, return_tensors="pt")
    offset_tensor = encoding["offset_mapping"]
    offsets = offset_tensor.tolist()
    span_rows, span_gold = [], []
    for row, example in enumerate(chunk):
        for span in example.spans:
            if span.sentiment is None:
                continue
            found = token_range(offsets[row], span.start, span.end)
            if found is None:
                seen.entity_lost += 1
                continue
            span_rows.append([row, found[0], found[1]])
            span_gold.append(span.sentiment)
    span_index = torch.tensor(span_rows, dtype=torch.long, device=device).reshape(-1, 3)
    outputs = model(span_index=span_index, **encoder_inputs(model, [e.text for e in chunk], encoding, device))
    doc_probs = torch.softmax(outputs.sentiment.float(), dim=-1).cpu()
    ner_ids = constrained_tags(outputs.ner, real_tokens(offset_tensor))
    argmax_ids = outputs.ner.float().argmax(-1).cpu().tolist()
    entity_probs = torch.softmax(outputs.entity.float(), dim=-1).cpu()
    for row, example in enumerate(chunk):
        if example.sentiment is not None:
            confidence, best = doc_probs[row].max(0)
            seen.doc.append((example.sentiment, SENTIMENT_LABELS[int(best)], float(confidence)))
            seen.doc_probs.append(doc_probs[row].tolist())
        if example.ner:
            gold = [(s.start, s.end, s.type) for s in example.spans if s.type is not None]
            seen.ner_gold.append(word_tags(example.text, gold))
            for ids, into in ((ner_ids, seen.ner_pred), (argmax_ids, seen.ner_pred_argmax)):
                into.append(word_tags(example.text, drop_markup_entities(
                    example.text, decode_bio(ids[row], offsets[row], example.text))))
    for gold_label, probs in zip(span_gold, entity_probs, strict=True):
        confidence, best = probs.max(0)
        seen.entity.append((gold_label, SENTIMENT_LABELS[int(best)], float(confidence)))
        seen.entity_probs.append(probs.tolist())


def _with_ece(rows: list[tuple[str, str, float]]) -> dict[str, Any]:
    report = classification([g for g, _, _ in rows], [p for _, p, _ in rows])
    report["ece"] = expected_calibration_error([c for _, _, c in rows], [g == p for g, p, _ in rows])
    return report


def report(seen: Collected) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if seen.doc:
        out["sentiment"] = _with_ece(seen.doc)
    if seen.ner_gold:
        out["ner"] = ner_scores(seen.ner_gold, seen.ner_pred)
        out["ner"]["argmax_f1"] = ner_scores(seen.ner_gold, seen.ner_pred_argmax)["f1"]
    if seen.entity:
        out["entity_sentiment"] = _with_ece(seen.entity)
        out["entity_sentiment"]["spans_beyond_max_length"] = seen.entity_lost
    return out


def selection_score(metrics: dict[str, Any], metric: str = "mean") -> float:
    """The number early stopping maximises: one task's macro-F1 / entity F1, or the mean over the tasks present."""
    scores = {
        "sentiment_macro_f1": metrics.get("sentiment", {}).get("macro_f1"),
        "ner_f1": metrics.get("ner", {}).get("f1"),
        "entity_macro_f1": metrics.get("entity_sentiment", {}).get("macro_f1"),
    }
    if metric == "mean":
        present = [float(v) for v in scores.values() if v is not None]
        return sum(present) / len(present) if present else 0.0
    value = scores.get(metric)
    return float(value) if value is not None else 0.0


def evaluate_dir(model_dir: Path, examples: Sequence[Example], *, device: str = "auto", precision: str = "auto",
                 max_length: int = 128, batch_size: int = 64) -> dict[str, Any]:
    """Load a saved multi-task directory and evaluate it (``finpulse eval``)."""
    manifest = check_multitask_dir(model_dir)
    torch_device = resolve_device(device)
    model = MultitaskModel.load(model_dir, torch_device)
    tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # a local model folder; never the Hub
        model_dir, trust_remote_code=False, local_files_only=True)
    dtype = resolve_dtype(precision, torch_device)
    metrics = evaluate(model, tokenizer, examples, max_length=max_length, batch_size=batch_size, dtype=dtype)
    return {"model": str(model_dir), "version": manifest.get("version"), "precision": str(dtype or "fp32"),
            "max_length": max_length, "examples": len(examples), **metrics}
