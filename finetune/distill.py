"""Knowledge distillation (``finpulse train --teacher DIR``): the student learns the teacher's soft targets.

DistilBERT-style, for each of the three heads: ``loss = alpha * hard-label loss (where labels exist) + (1 - alpha)
* T^2 * KL(teacher_T || student_T)``, where ``_T`` is the softmax at temperature T (the T^2 keeps the gradient
scale of the soft term independent of T, as Hinton et al. do). Unlabelled ``text=`` examples have only the soft term.

The teacher runs once, before training (eval mode, no gradients, batched by length), and its targets are kept in
memory already aligned to the student's tokens (:mod:`finetune.align`), so an epoch costs only the student. Entity
targets cover the example's own spans, or, where it has none (unlabelled text, document-only sets), the spans
serving would score: cashtags and the entities the teacher itself found, so the student learns per-entity
sentiment on them too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetune.align import CharSpan, SoftTargets, TeacherView, align, teacher_words
from finetune.args import TrainArgs
from finetune.casing import encoder_inputs
from finetune.data.text import SOURCE as TEXT_SOURCE
from finetune.evaluate import evaluate
from finetune.examples import Example
from finetune.features import Offsets, decode_bio, token_range
from finetune.markup import drop_markup_entities, find_cashtags
from finetune.model import MultitaskModel, Outputs
from finetune.model_dir import check_multitask_dir, read_manifest
from monitor.core.errors import ConfigError

log = logging.getLogger(__name__)

TEACHER_FIX = ("pass a `finpulse train` output directory (train the teacher first, e.g. "
               "`finpulse train --base-model all-mpnet-base-v2 --data ...`)")


def check_teacher(path: str) -> dict[str, Any]:
    """The teacher's manifest, or a one-line ConfigError naming the fix (checked before any data is read)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"--teacher {path}: no such directory; {TEACHER_FIX}")
    if not (folder / "model.safetensors").is_file() or read_manifest(folder).get("kind") != "multitask":
        raise ConfigError(f"--teacher {path}: not a finpulse multi-task model (no model.safetensors with a "
                          f"finpulse_model.json of kind 'multitask'); {TEACHER_FIX}")
    return check_multitask_dir(folder)  # still refuses a model format newer than this finpulse


def entity_spans(example: Example, ner_ids: Sequence[int], offsets: Offsets) -> list[CharSpan]:
    """The example's own spans, else those serving scores: cashtags, then the teacher's entities beside them."""
    if example.spans:
        return sorted({(span.start, span.end) for span in example.spans})
    text = example.text
    spans = [(start, end) for start, end, _ in find_cashtags(text)]
    for start, end, _ in drop_markup_entities(text, decode_bio(ner_ids, offsets, text)):
        if not any(s < end and start < e for s, e in spans):
            spans.append((start, end))
    return sorted(spans)


def teacher_views(model: MultitaskModel, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
                  max_length: int, batch_size: int, dtype: torch.dtype | None = None) -> list[TeacherView]:
    """One batched, gradient-free teacher pass: each example's outputs in character space."""
    device = next(model.parameters()).device
    model.eval()
    views: list[TeacherView | None] = [None] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].text))  # less padding
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    with torch.inference_mode(), autocast:
        for begin in range(0, len(order), batch_size):
            chunk = order[begin:begin + batch_size]
            encoding = tokenizer([examples[i].text for i in chunk], padding=True, truncation=True,
                                 max_length=max_length, return_offsets_mapping=True, return_tensors="pt")
            offsets = encoding["offset_mapping"].tolist()
            outputs = model(**encoder_inputs(model, [examples[i].text for i in chunk], encoding, device))
            ner = outputs.ner.float().cpu()
            ner_ids = ner.argmax(-1).tolist()
            rows: list[list[int]] = []
            spans_of: list[list[CharSpan]] = []
            for row, i in enumerate(chunk):
                kept = []
                for start, end in entity_spans(examples[i], ner_ids[row], offsets[row]):
                    found = token_range(offsets[row], start, end)
                    if found is not None:  # beyond the teacher's max length
                        kept.append((start, end))
                        rows.append([row, *found])
                spans_of.append(kept)
            span_index = torch.tensor(rows, dtype=torch.long, device=device).reshape(-1, 3)
            entity = model.span_logits(outputs.hidden, outputs.pooled, span_index).float().cpu()
            doc = outputs.sentiment.float().cpu()
            cursor = 0
            for row, i in enumerate(chunk):
                found_words, word_logits = teacher_words(examples[i].text, offsets[row], ner[row])
                count = len(spans_of[row])
                views[i] = TeacherView(doc[row], found_words, word_logits, spans_of[row],
                                       entity[cursor:cursor + count])
                cursor += count
    return [view for view in views if view is not None]


def _kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T), averaged over rows."""
    log_probs = nn.functional.log_softmax(student_logits.float() / temperature, dim=-1)
    return nn.functional.kl_div(log_probs, teacher_probs, reduction="batchmean")


class Distiller:
    """The teacher's cached targets and the distillation loss over them."""

    def __init__(self, targets: list[SoftTargets], alpha: float, temperature: float,
                 record: dict[str, Any] | None = None) -> None:
        self.targets = targets
        self.alpha = alpha
        self.temperature = temperature
        self.record = record or {}

    def batch(self, ids: Sequence[int], device: torch.device | str) -> dict[str, torch.Tensor]:
        """The targets of the examples ``ids`` (the rows of one training batch, in order)."""
        chosen = [self.targets[i] for i in ids]
        ner_rows = [[row, token] for row, t in enumerate(chosen) for token in t.ner_tokens]
        span_rows = [[row, start, end] for row, t in enumerate(chosen) for start, end in t.spans]
        return {
            "doc": torch.stack([t.doc for t in chosen]).to(device),
            "ner_index": torch.tensor(ner_rows, dtype=torch.long).reshape(-1, 2).to(device),
            "ner": torch.cat([t.ner for t in chosen]).to(device),
            "span_index": torch.tensor(span_rows, dtype=torch.long).reshape(-1, 3).to(device),
            "entity": torch.cat([t.entity for t in chosen]).to(device),
        }

    def kd_loss(self, model: MultitaskModel, outputs: Outputs, ids: Sequence[int],
                weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[torch.Tensor, dict[str, float]]:
        """T^2 * the task-weighted sum of each head's KL to the teacher; the parts are the plain KLs."""
        targets = self.batch(ids, outputs.sentiment.device)
        temperature = self.temperature
        parts = {"sentiment": _kl(outputs.sentiment, targets["doc"], temperature)}
        ner_index = targets["ner_index"]
        if ner_index.numel():
            parts["ner"] = _kl(outputs.ner[ner_index[:, 0], ner_index[:, 1]], targets["ner"], temperature)
        if targets["span_index"].numel():
            # fp32 in: the caller may be outside the autocast block that made bf16 hidden states
            entity = model.span_logits(outputs.hidden.float(), outputs.pooled.float(), targets["span_index"])
            parts["entity"] = _kl(entity, targets["entity"], temperature)
        scale = dict(zip(("sentiment", "ner", "entity"), weights, strict=True))
        total = sum((scale[name] * value for name, value in parts.items()), torch.zeros((), device=ner_index.device))
        return temperature ** 2 * total, {name: float(value.detach()) for name, value in parts.items()}

    def combine(self, model: MultitaskModel, outputs: Outputs, ids: Sequence[int], hard: torch.Tensor,
                hard_parts: dict[str, float], weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """``alpha * hard + (1 - alpha) * soft``; the progress parts gain ``kd_<head>`` entries."""
        soft, soft_parts = self.kd_loss(model, outputs, ids, weights)
        total = self.alpha * hard + (1.0 - self.alpha) * soft
        return total, {**hard_parts, **{f"kd_{name}": value for name, value in soft_parts.items()}}


def build_distiller(args: TrainArgs, train: Sequence[Example], valid: Sequence[Example],
                    tokenizer: PreTrainedTokenizerBase, device: torch.device,
                    dtype: torch.dtype | None) -> Distiller:
    """Run the teacher over the training examples once and align its targets to the student's tokens."""
    assert args.teacher is not None  # nosec B101 # callers pass --teacher runs only
    folder = Path(args.teacher).expanduser()
    manifest = check_teacher(args.teacher)
    teacher = MultitaskModel.load(folder, device)
    teacher_tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # a local model folder; never the Hub
        folder, trust_remote_code=False, local_files_only=True)
    # The teacher sees at least as much of each text as the student (tokenizers cut at different words).
    max_length = max(args.max_length, int(manifest.get("max_length") or 0))
    started = time.perf_counter()
    views = teacher_views(teacher, teacher_tokenizer, train, max_length=max_length,
                          batch_size=args.eval_batch_size, dtype=dtype)
    seconds = time.perf_counter() - started
    teacher_validation = evaluate(teacher, teacher_tokenizer, valid, max_length=max_length,
                                  batch_size=args.eval_batch_size, dtype=dtype) if valid else {}
    del teacher
    encoding = tokenizer([e.text for e in train], truncation=True, max_length=args.max_length,
                         return_offsets_mapping=True)  # the same tokens finetune.features.encode produced
    targets = [align(view, offsets, args.distill_temperature)
               for view, offsets in zip(views, encoding["offset_mapping"], strict=True)]
    record = {
        "teacher": {"path": str(folder.resolve()), "version": manifest.get("version"),
                    "base_model": manifest.get("base_model"), "max_length": max_length},
        "alpha": args.distill_alpha, "temperature": args.distill_temperature,
        "examples": len(targets), "unlabelled_examples": sum(e.source == TEXT_SOURCE for e in train),
        "word_targets": sum(len(t.ner_tokens) for t in targets),
        "entity_targets": sum(len(t.spans) for t in targets),
        "teacher_found_spans": sum(len(v.spans) for v, e in zip(views, train, strict=True) if not e.spans),
        "teacher_seconds": round(seconds, 2), "teacher_validation": teacher_validation,
    }
    log.info("teacher %s (%s): soft targets for %d examples (%d unlabelled) in %.1f s", manifest.get("version"),
             manifest.get("base_model"), len(targets), record["unlabelled_examples"], seconds)
    return Distiller(targets, args.distill_alpha, args.distill_temperature, record)
