"""Deterministic splits: near-duplicate keys, seeded fractions, validation carving, leakage removal, subsampling.

Splits depend on (seed, normalized text) only, never on file order or Python's hash seed, so the same data gives the
same split on every machine.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re

from finetune.examples import Example

log = logging.getLogger(__name__)

_URL_RE = re.compile(r"https?://\S+")


def normalize_text(text: str) -> str:
    """Key for near-duplicate detection: URLs stripped, lower case, whitespace collapsed."""
    return " ".join(_URL_RE.sub(" ", text).lower().split())


def stable_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, key): splits do not depend on file order or Python's hash seed."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_validation(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Carve a validation set; near-duplicate texts land on the same side."""
    train: list[Example] = []
    valid: list[Example] = []
    for example in examples:
        side = valid if stable_fraction(normalize_text(example.text), seed) < fraction else train
        side.append(example)
    return train, valid


def drop_overlap(train: list[Example], others: list[Example]) -> list[Example]:
    """Remove training examples whose normalized text occurs in ``others`` (split leakage)."""
    seen = {normalize_text(example.text) for example in others}
    kept = [example for example in train if normalize_text(example.text) not in seen]
    if len(kept) < len(train):
        log.info("dropped %d training examples whose text also occurs in validation/excluded data",
                 len(train) - len(kept))
    return kept


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))  # nosec B311 # seeded, reproducible
    return [examples[i] for i in chosen]
