"""Soft targets cross tokenizers by words and character spans: MiniLM's uncased word pieces (the teacher side) and
a cased byte-level BPE built here from the sample corpus (the student side) split one headline differently."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from finetune.align import TeacherView, align, inside_matrix, teacher_words, words
from finetune.distill import entity_spans
from finetune.examples import BIO_LABELS, Example, Span
from tests.finetune.distill_helpers import bpe_tokenizer

TEXT = "Tata Motors' Q2 profit jumps; Infosys, $TTM up 5.3%"
B_ORG, I_ORG, OUT = BIO_LABELS.index("B-ORG"), BIO_LABELS.index("I-ORG"), BIO_LABELS.index("O")


@pytest.fixture(scope="module")
def wordpiece(tiny_model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def bpe() -> PreTrainedTokenizerFast:
    return bpe_tokenizer()


def pieces(tokenizer: PreTrainedTokenizerBase, text: str, **kwargs: int) -> tuple[list[str], list[tuple[int, int]]]:
    encoding = tokenizer(text, return_offsets_mapping=True, truncation=True, **kwargs)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    assert isinstance(tokens, list)
    return tokens, [(int(s), int(e)) for s, e in encoding["offset_mapping"]]


def test_the_two_tokenizers_really_differ(wordpiece: PreTrainedTokenizerBase, bpe: PreTrainedTokenizerFast) -> None:
    assert pieces(wordpiece, TEXT)[0][:6] == ["[CLS]", "tata", "motors", "'", "q", "##2"]
    assert pieces(bpe, TEXT)[0][:6] == ["<s>", "T", "at", "a", "Ġ", "M"]  # cased, small vocabulary, "Ġ" for spaces


def test_a_word_takes_the_teachers_first_sub_token(wordpiece: PreTrainedTokenizerBase) -> None:
    tokens, offsets = pieces(wordpiece, TEXT)
    logits = torch.zeros((len(tokens), len(BIO_LABELS)))
    logits[:, 0] = torch.arange(len(tokens), dtype=torch.float)  # each row names its token
    found, rows = teacher_words(TEXT, offsets, logits)
    assert found == words(TEXT)
    token_of = {TEXT[s:e]: tokens[int(row[0])] for (s, e), row in zip(found, rows, strict=True)}
    assert token_of["Infosys"] == "info" and token_of["Q2"] == "q" and token_of["TTM"] == "tt"  # not ##sy, ##2, ##m
    assert token_of["Motors"] == "motors" and token_of["'"] == "'" and token_of["%"] == "%"
    # Words cut off by the teacher's max length get no target.
    _, short = pieces(wordpiece, TEXT, max_length=6)
    assert [TEXT[s:e] for s, e in teacher_words(TEXT, short, logits[:6])[0]] == ["Tata", "Motors", "'", "Q2"]


def test_word_targets_land_on_the_students_pieces_of_the_same_word(bpe: PreTrainedTokenizerFast) -> None:
    spans = words(TEXT)
    ner = torch.full((len(spans), len(BIO_LABELS)), -4.0)
    ner[:, OUT] = 4.0
    ner[spans.index((30, 37)), :] = torch.tensor([-4.0, 4.0, 0.0, -4.0, -4.0, -4.0, -4.0])  # Infosys: B-ORG, some I
    entity = torch.tensor([[3.0, 0.0, -3.0], [-3.0, 0.0, 3.0]])
    view = TeacherView(torch.tensor([0.0, 1.0, 2.0]), spans, ner, [(0, 11), (39, 43)], entity)
    tokens, offsets = pieces(bpe, TEXT)
    targets = align(view, offsets, temperature=2.0)
    assert len(set(targets.ner_tokens)) == len(targets.ner_tokens)  # one target per student token
    assert targets.ner_tokens == [i for i, (s, e) in enumerate(offsets) if e > s]  # each real piece, no "Ġ"/<s>
    word_probs = torch.softmax(ner / 2.0, -1)
    infosys = word_probs[spans.index((30, 37))]
    by_token = dict(zip(targets.ner_tokens, targets.ner, strict=True))
    first = tokens.index("I")
    assert offsets[first] == (30, 31) and torch.allclose(by_token[first], infosys)
    for piece in range(first + 1, first + 7):  # n f o s y s: B-ORG's mass moves to I-ORG
        assert 30 < offsets[piece][0] < 37 and torch.allclose(by_token[piece], infosys @ inside_matrix())
        assert by_token[piece][B_ORG] == 0 and by_token[piece][I_ORG] == pytest.approx(infosys[B_ORG] + infosys[I_ORG])
    assert all(int(row.argmax()) == OUT for token, row in by_token.items() if not 30 <= offsets[token][0] < 37)
    assert [TEXT[offsets[s][0]:offsets[e - 1][1]] for s, e in targets.spans] == ["Tata Motors", "$TTM"]
    assert torch.allclose(targets.entity, torch.softmax(entity / 2.0, -1))
    assert torch.allclose(targets.doc, torch.softmax(torch.tensor([0.0, 1.0, 2.0]) / 2.0, -1))
    # Truncated away on the student side: no word target and no span beyond its max length.
    _, short = pieces(bpe, TEXT, max_length=12)
    cut = align(view, short, temperature=2.0)
    assert max(cut.ner_tokens) <= 10 and [TEXT[short[s][0]:short[e - 1][1]] for s, e in cut.spans] == ["Tata Motors"]
    assert torch.allclose(cut.entity, targets.entity[:1])


def test_entity_targets_cover_own_spans_else_the_teachers_and_cashtags(wordpiece: PreTrainedTokenizerBase) -> None:
    tokens, offsets = pieces(wordpiece, TEXT)
    ner_ids = [OUT] * len(tokens)
    start = tokens.index("info")
    ner_ids[start:start + 3] = [B_ORG, I_ORG, I_ORG]  # the teacher's NER finds "Infosys"
    ner_ids[tokens.index("tt")] = B_ORG  # and "TTM", inside the cashtag: the cashtag wins, as in serving
    assert entity_spans(Example(TEXT), ner_ids, offsets) == [(30, 37), (39, 43)]
    own = Example(TEXT, spans=[Span(0, 11, "ORG", "positive"), Span(30, 37, None, "negative")])
    assert entity_spans(own, ner_ids, offsets) == [(0, 11), (30, 37)]
