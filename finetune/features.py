"""Examples -> token features (one tokenizer pass) and back: char spans <-> token ranges, BIO decoding, batching.

Token labels are derived from character spans through the tokenizer's offset mapping, so every data format goes
through the same alignment. Every sub-word token of an entity is labelled (B on the first, I on the rest), which
lets decoding work on offsets without a word-to-token map. Special tokens have the offset (0, 0) and are skipped.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from finetune.casing import casing_ids
from finetune.examples import BIO_LABELS, IGNORE, Example, sentiment_ids

log = logging.getLogger(__name__)

Offsets = Sequence[tuple[int, int]] | Sequence[Sequence[int]]


@dataclass(slots=True)
class Features:
    input_ids: list[int]
    sentiment: int  # IGNORE when the example has no document label
    ner: list[int]  # per token; all IGNORE when NER is masked
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # token start, token end (excl.), label
    casing: list[int] = field(default_factory=list)  # per token (finetune.casing); read by casing models only


def token_range(offsets: Offsets, start: int, end: int) -> tuple[int, int] | None:
    """Tokens overlapping the character span [start, end), as a half-open range; None if truncated away."""
    hits = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
    return (hits[0], hits[-1] + 1) if hits else None


def encode(examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[Features]:
    label_of = sentiment_ids()
    bio = {label: i for i, label in enumerate(BIO_LABELS)}
    encoding = tokenizer([e.text for e in examples], truncation=True, max_length=max_length,
                         return_offsets_mapping=True)
    out = []
    lost = 0
    for example, ids, offsets in zip(examples, encoding["input_ids"], encoding["offset_mapping"], strict=True):
        ner = [IGNORE] * len(ids)
        if example.ner:
            ner = [bio["O"] if e > s else IGNORE for s, e in offsets]
        spans = []
        for span in example.spans:
            found = token_range(offsets, span.start, span.end)
            if found is None:
                lost += 1
                continue
            if example.ner and span.type is not None:
                ner[found[0]] = bio[f"B-{span.type}"]
                for i in range(found[0] + 1, found[1]):
                    ner[i] = bio[f"I-{span.type}"]
            if span.sentiment is not None:
                spans.append((found[0], found[1], label_of[span.sentiment]))
        sentiment = IGNORE if example.sentiment is None else label_of[example.sentiment]
        out.append(Features(list(ids), sentiment, ner, spans, casing_ids(example.text, offsets)))
    if lost:
        log.info("%d entity spans fell beyond max_length=%d and were not used", lost, max_length)
    return out


def collate(batch: Sequence[Features], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f.input_ids) for f in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    ner = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    casing = torch.zeros((len(batch), width), dtype=torch.long)  # padding is class NONE (0)
    span_rows: list[list[int]] = []
    for row, features in enumerate(batch):
        n = len(features.input_ids)
        ids[row, :n] = torch.tensor(features.input_ids)
        mask[row, :n] = 1
        ner[row, :n] = torch.tensor(features.ner)
        casing[row, :len(features.casing)] = torch.tensor(features.casing, dtype=torch.long)
        span_rows.extend([row, start, end, label] for start, end, label in features.spans)
    spans = torch.tensor(span_rows, dtype=torch.long).reshape(-1, 4)
    return {
        "input_ids": ids, "attention_mask": mask, "casing_ids": casing,
        "sentiment_labels": torch.tensor([f.sentiment for f in batch], dtype=torch.long),
        "ner_labels": ner,
        "span_index": spans[:, :3].contiguous(), "span_labels": spans[:, 3].contiguous(),
    }


def epoch_indices(weights: Sequence[float], rng: random.Random) -> list[int]:
    """Example indices of one epoch: weight 2.5 = two copies plus a third with probability 0.5."""
    out = []
    for i, weight in enumerate(weights):
        copies = int(weight) + (1 if rng.random() < weight - int(weight) else 0)
        out.extend([i] * copies)
    return out


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random, group: int = 50,
                           weights: Sequence[float] | None = None) -> list[list[int]]:
    """Shuffled batches of similar length (less padding, faster on CPU): shuffle, sort within windows of
    ``group`` batches, cut into batches, shuffle the batches. ``weights`` repeat or thin out examples."""
    order = list(range(len(lengths))) if weights is None else epoch_indices(weights, rng)
    rng.shuffle(order)
    window = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def decode_bio(label_ids: Sequence[int], offsets: Offsets, text: str) -> list[tuple[int, int, str]]:
    """Token BIO predictions -> character spans (start, end, type), widened to whole words. An I- tag that does
    not continue an entity of its type starts one (lenient IOB2, as seqeval's default mode reads it)."""
    raw: list[tuple[int, int, str]] = []
    inside = False
    for label_id, (s, e) in zip(label_ids, offsets, strict=False):
        if e <= s:
            continue
        label = BIO_LABELS[label_id]
        if label == "O":
            inside = False
            continue
        prefix, kind = label.split("-", 1)
        if prefix == "I" and inside and raw[-1][2] == kind:
            raw[-1] = (raw[-1][0], int(e), kind)
            continue
        raw.append((int(s), int(e), kind))
        inside = True
    out: list[tuple[int, int, str]] = []
    for start, end, kind in raw:
        while start > 0 and text[start - 1].isalnum():
            start -= 1
        while end < len(text) and text[end].isalnum():
            end += 1
        if out and start < out[-1][1]:  # pieces of one word tagged apart: one entity, the first piece's type
            out[-1] = (out[-1][0], max(end, out[-1][1]), out[-1][2])
        else:
            out.append((start, end, kind))
    return out
