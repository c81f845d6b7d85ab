"""Casing classes per token: what an uncased encoder never sees, fed back in as one small embedding.

all-MiniLM-L6-v2 and all-mpnet-base-v2 lowercase their input, so "Apple" and "apple", "US" and "us" reach the
encoder as the same tokens, and capitalisation is the strongest cue for names in English news. A model trained
with casing (``finpulse train --casing``, the default) adds a learned vector per casing class to every token's
word embedding (:class:`finetune.model.MultitaskModel`, initialised to zero, so training starts from the encoder as
it was). Measured on FiNER-ORD in the README ("Casing").

A token's class is that of the whole word it lies in (a run of letters and digits), so every piece of
"McDonald" reads as mIxed and every piece of "NVIDIA" as ALL CAPS. Special and padding tokens get ``NONE``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

NONE, LOWER, TITLE, TITLE_AT_START, UPPER, MIXED, DIGITS, SYMBOL = range(8)
CASING_CLASSES = 8
CASING_INPUT = "casing_ids"  # the model's keyword and the ONNX graph's input name

_WORD = re.compile(r"[^\W_]+")  # letters and digits in any script
_OPENERS = "\"'“‘([«"
_SENTENCE_END = ".!?…"


def word_class(word: str, at_sentence_start: bool) -> int:
    """The casing class of one word (letters and digits only)."""
    if word.isdigit():
        return DIGITS
    if any(c.isdigit() for c in word):
        return MIXED  # Q3, 3M, H200: codes and product names
    if not any(c.isupper() for c in word):
        return LOWER  # also scripts without case
    if len(word) > 1 and word.isupper():
        return UPPER
    if word[0].isupper() and (len(word) == 1 or word[1:].islower()):
        return TITLE_AT_START if at_sentence_start else TITLE
    return MIXED  # iPhone, McDonald, eBay


def starts_sentence(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens the text, a line or a sentence (after . ! ? and any quotes or
    brackets); such a word is capitalised whatever it is, so it gets its own class."""
    i = start - 1
    while i >= 0 and (text[i].isspace() or text[i] in _OPENERS):
        if text[i] == "\n":
            return True
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def casing_ids(text: str, offsets: Sequence[Sequence[int]]) -> list[int]:
    """One class per token; ``offsets`` are the tokenizer's character offsets ((0, 0) for special tokens)."""
    by_char = [SYMBOL] * len(text)
    for match in _WORD.finditer(text):
        kind = word_class(match.group(), starts_sentence(text, match.start()))
        by_char[match.start():match.end()] = [kind] * (match.end() - match.start())
    return [by_char[int(s)] if int(e) > int(s) and int(s) < len(text) else NONE for s, e in offsets]


def casing_batch(texts: Sequence[str], offset_mapping: torch.Tensor) -> torch.Tensor:
    """``[batch, tokens]`` casing classes for a padded batch, from its ``offset_mapping`` ``[batch, tokens, 2]``."""
    rows = [casing_ids(text, offsets) for text, offsets in zip(texts, offset_mapping.tolist(), strict=True)]
    return torch.tensor(rows, dtype=torch.long).reshape(offset_mapping.shape[:2])


def encoder_inputs(model: torch.nn.Module, texts: Sequence[str], encoding: Mapping[str, Any],
                   device: torch.device) -> dict[str, torch.Tensor]:
    """The tensors a multi-task model (torch or ONNX) takes from a tokenizer batch, on ``device``: ids, mask, the
    token types when the tokenizer gives them, and the casing classes when the model reads them."""
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs: dict[str, torch.Tensor] = {k: encoding[k] for k in names if k in encoding}
    if getattr(model, "reads_casing", False):
        inputs[CASING_INPUT] = casing_batch(texts, encoding["offset_mapping"])
    return {k: v.to(device) for k, v in inputs.items()}
