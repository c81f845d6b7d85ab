"""Cross-tokenizer alignment: the teacher's soft targets, computed on its tokens, moved onto the student's tokens.

Teacher and student may use different tokenizers (mpnet's word pieces and MiniLM's, or a BPE), so token ids and
positions mean nothing across them. Both sides meet in character space, through their offset mappings:

* document sentiment is one distribution per text;
* NER targets are per **word**, a tokenizer-independent segmentation (runs of word characters, and each other
  non-space character alone, as BERT's pre-tokenizer splits). A word's target is the teacher's output at its first
  sub-token (the teacher token holding the word's first character); it trains the student's first sub-token of the
  same word. The student's further sub-tokens of the word get the same distribution with each B-x moved to I-x,
  the labelling convention of :mod:`finetune.features` (every piece of an entity is tagged, B only on the first);
* entity-sentiment targets are per character span, mapped to each side's tokens by
  :func:`finetune.features.token_range`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from finetune.examples import BIO_LABELS
from finetune.features import Offsets, token_range

log = logging.getLogger(__name__)

WORD_RE = re.compile(r"\w+|[^\w\s]")
CharSpan = tuple[int, int]


@dataclass(slots=True)
class TeacherView:
    """The teacher's outputs for one text, in character space (no trace of its tokenizer left)."""

    doc: torch.Tensor  # [3] logits
    words: list[CharSpan]  # the words the teacher saw (within its max length)
    ner: torch.Tensor  # [len(words), len(BIO_LABELS)] logits at each word's first sub-token
    spans: list[CharSpan]  # entity spans: the example's own, else the ones the teacher found (and cashtags)
    entity: torch.Tensor  # [len(spans), 3] logits


@dataclass(slots=True)
class SoftTargets:
    """One example's teacher distributions at temperature T, on the student's token positions."""

    doc: torch.Tensor  # [3]
    ner_tokens: list[int]  # student token index of each row of ``ner``
    ner: torch.Tensor  # [len(ner_tokens), len(BIO_LABELS)]
    spans: list[tuple[int, int]]  # student token ranges (start, end exclusive) of each row of ``entity``
    entity: torch.Tensor  # [len(spans), 3]


def words(text: str) -> list[CharSpan]:
    return [match.span() for match in WORD_RE.finditer(text)]


def _real(offset: Sequence[int]) -> bool:
    return int(offset[1]) > int(offset[0])  # special and padding tokens have (0, 0)


def first_tokens(offsets: Offsets, spans: Sequence[CharSpan]) -> list[int | None]:
    """For each word (sorted, disjoint), the index of the token holding its first character, or else the first
    token starting inside it; None when no token covers it (truncated away). One left-to-right pass."""
    out: list[int | None] = []
    i, n = 0, len(offsets)
    for start, end in spans:
        while i < n and (not _real(offsets[i]) or int(offsets[i][1]) <= start):
            i += 1
        out.append(i if i < n and int(offsets[i][0]) < end else None)
    return out


def student_positions(offsets: Offsets, spans: Sequence[CharSpan]) -> list[tuple[int, list[int]] | None]:
    """For each word, the student's first sub-token and its further sub-tokens (tokens starting inside the word).
    A token already claimed by an earlier word (one token over two words) is not given a second target."""
    firsts = first_tokens(offsets, spans)
    out: list[tuple[int, list[int]] | None] = []
    claimed = -1
    for (_, end), first in zip(spans, firsts, strict=True):
        if first is None or first <= claimed:
            out.append(None)
            continue
        rest = []
        j = first + 1
        while j < len(offsets) and (not _real(offsets[j]) or int(offsets[j][0]) < end):
            if _real(offsets[j]):
                rest.append(j)
            j += 1
        out.append((first, rest))
        claimed = rest[-1] if rest else first
    return out


def inside_matrix() -> torch.Tensor:
    """[labels, labels] matrix moving each B-x probability onto I-x (a further sub-token of the same word)."""
    index = {label: i for i, label in enumerate(BIO_LABELS)}
    matrix = torch.zeros((len(BIO_LABELS), len(BIO_LABELS)))
    for label, i in index.items():
        matrix[i, index["I-" + label[2:]] if label.startswith("B-") else i] = 1.0
    return matrix


def align(view: TeacherView, student_offsets: Offsets, temperature: float) -> SoftTargets:
    """The teacher's view of one text as targets for the student's tokens, as probabilities at ``temperature``."""
    word_probs = torch.softmax(view.ner.float() / temperature, dim=-1)
    inside = word_probs @ inside_matrix()
    tokens: list[int] = []
    rows: list[torch.Tensor] = []
    for w, found in enumerate(student_positions(student_offsets, view.words)):
        if found is None:
            continue
        first, rest = found
        tokens.append(first)
        rows.append(word_probs[w])
        tokens.extend(rest)
        rows.extend(inside[w] for _ in rest)
    spans: list[tuple[int, int]] = []
    kept: list[int] = []
    for s, (start, end) in enumerate(view.spans):
        tokens_of_span = token_range(student_offsets, start, end)
        if tokens_of_span is not None:
            spans.append(tokens_of_span)
            kept.append(s)
    return SoftTargets(
        doc=torch.softmax(view.doc.float() / temperature, dim=-1),
        ner_tokens=tokens,
        ner=torch.stack(rows) if rows else torch.zeros((0, len(BIO_LABELS))),
        spans=spans,
        entity=torch.softmax(view.entity.float()[kept] / temperature, dim=-1),
    )


def teacher_words(text: str, offsets: Offsets, ner_logits: torch.Tensor) -> tuple[list[CharSpan], torch.Tensor]:
    """The words of ``text`` the teacher saw, with its NER logits at each word's first sub-token."""
    spans = words(text)
    firsts = first_tokens(offsets, spans)
    kept = [(span, token) for span, token in zip(spans, firsts, strict=True) if token is not None]
    index = torch.tensor([token for _, token in kept], dtype=torch.long)
    return [span for span, _ in kept], ner_logits[index].float().cpu()
