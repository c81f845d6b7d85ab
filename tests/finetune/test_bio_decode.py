"""Constrained BIO decoding: always a valid tag sequence, and the most probable one (checked by brute force)."""

from __future__ import annotations

import itertools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.bio_decode import allowed_transitions, constrained_tags, real_tokens
from finetune.examples import BIO_LABELS

LABEL = {name: i for i, name in enumerate(BIO_LABELS)}
ALLOWED = allowed_transitions()


def _valid(tags: list[int]) -> bool:
    previous = LABEL["O"]
    for tag in tags:
        if not ALLOWED[previous, tag]:
            return False
        previous = tag
    return True


def _score(log_probs: torch.Tensor, tags: list[int]) -> float:
    return float(sum(log_probs[t, tag] for t, tag in enumerate(tags)))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31 - 1), st.lists(st.booleans(), min_size=4, max_size=4))
def test_the_decoded_sequence_is_valid_and_the_best_valid_one(tokens: int, seed: int, mask: list[bool]) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((1, tokens, len(BIO_LABELS)), generator=generator) * 3
    real = torch.tensor([mask[:tokens]])
    decoded = constrained_tags(logits, real)[0]
    kept = [t for t in range(tokens) if mask[t]]
    assert all(decoded[t] == LABEL["O"] for t in range(tokens) if not mask[t])  # skipped tokens are O
    chain = [decoded[t] for t in kept]
    assert _valid(chain)
    log_probs = torch.log_softmax(logits[0, kept], dim=-1)
    best = max((_score(log_probs, list(path)) for path in itertools.product(range(len(BIO_LABELS)), repeat=len(kept))
                if _valid(list(path))), default=0.0)
    assert abs(_score(log_probs, chain) - best) < 1e-4


def test_an_entity_without_a_beginning_is_repaired_not_split() -> None:
    # Per-token argmax reads "O I-ORG I-ORG": leniently one ORG, but a weak B-ORG on the first token is the best
    # valid reading. And "B-ORG I-PER" (a type change inside a name) becomes one consistent entity.
    def row(*pairs: tuple[str, float]) -> list[float]:
        values = [0.0] * len(BIO_LABELS)
        for name, value in pairs:
            values[LABEL[name]] = value
        return values

    logits = torch.tensor([[row(("O", 2.0), ("B-ORG", 1.8)), row(("I-ORG", 3.0)), row(("I-ORG", 3.0))],
                           [row(("B-ORG", 3.0)), row(("I-PER", 2.0), ("I-ORG", 1.9)), row(("O", 3.0))]])
    offsets = torch.tensor([[[0, 4], [5, 9], [10, 14]], [[0, 4], [4, 8], [9, 12]]])
    tags = constrained_tags(logits, real_tokens(offsets))
    assert [BIO_LABELS[i] for i in tags[0]] == ["B-ORG", "I-ORG", "I-ORG"]
    assert [BIO_LABELS[i] for i in tags[1]] == ["B-ORG", "I-ORG", "O"]
    assert [BIO_LABELS[i] for i in logits.argmax(-1)[1].tolist()] == ["B-ORG", "I-PER", "O"]


def test_special_and_padding_tokens_do_not_break_a_chain() -> None:
    logits = torch.zeros((1, 4, len(BIO_LABELS)))
    logits[0, 1, LABEL["B-LOC"]] = 5.0
    logits[0, 2, LABEL["I-LOC"]] = 5.0  # position 2 is a zero-width token: skipped, so 3 continues from 1
    logits[0, 3, LABEL["I-LOC"]] = 5.0
    offsets = torch.tensor([[[0, 0], [0, 3], [3, 3], [3, 6]]])
    assert [BIO_LABELS[i] for i in constrained_tags(logits, real_tokens(offsets))[0]] == ["O", "B-LOC", "O", "I-LOC"]
