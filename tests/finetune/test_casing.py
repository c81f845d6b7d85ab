"""Casing classes: what they say per token, that a casing model starts as its encoder, saves and loads the choice,
refuses to run without them, and learns what an uncased encoder cannot see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from finetune.base_model import default_base_model_dir
from finetune.casing import (
    DIGITS,
    LOWER,
    MIXED,
    NONE,
    SYMBOL,
    TITLE,
    TITLE_AT_START,
    UPPER,
    casing_batch,
    encoder_inputs,
)
from finetune.model import CASING_KEY, MultitaskModel
from tests.finetune.train_helpers import run_train
from tests.helpers import write

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer() -> AutoTokenizer:
    return AutoTokenizer.from_pretrained(default_base_model_dir())


def classes_by_token(tokenizer: AutoTokenizer, text: str) -> list[tuple[str, int]]:
    encoding = tokenizer([text], return_offsets_mapping=True, return_tensors="pt")
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    return list(zip(tokens, casing_batch([text], encoding["offset_mapping"])[0].tolist(), strict=True))


def test_each_token_gets_the_class_of_its_whole_word(tokenizer: AutoTokenizer) -> None:
    got = classes_by_token(tokenizer, "Apple rose. NVIDIA and McDonald's fell 3% in Q3 as the Fed")
    assert got == [
        ("[CLS]", NONE), ("apple", TITLE_AT_START), ("rose", LOWER), (".", SYMBOL),
        ("n", UPPER), ("##vid", UPPER), ("##ia", UPPER),  # every piece of an ALL CAPS word
        ("and", LOWER), ("mcdonald", MIXED), ("'", SYMBOL), ("s", LOWER), ("fell", LOWER), ("3", DIGITS),
        ("%", SYMBOL), ("in", LOWER), ("q", MIXED), ("##3", MIXED), ("as", LOWER), ("the", LOWER),
        ("fed", TITLE), ("[SEP]", NONE),
    ]


@pytest.mark.parametrize(("text", "word", "expected"), [
    ('He said: "Shares fell"', "shares", TITLE),  # a colon does not end a sentence
    ('Up. "Shares fell"', "shares", TITLE_AT_START),  # quotes after a full stop
    ("Up\nShares fell", "shares", TITLE_AT_START),  # a new line
    ("Shares of A fell", "a", TITLE),  # one capital letter reads as Title
    ("Sales in 東京 rose", "東", LOWER),  # scripts without case carry no casing signal
    ("Sales of iPhone rose", "iphone", MIXED),
])
def test_sentence_starts_and_odd_words(tokenizer: AutoTokenizer, text: str, word: str, expected: int) -> None:
    assert dict(classes_by_token(tokenizer, text))[word] == expected


def test_padding_and_special_tokens_are_class_none(tokenizer: AutoTokenizer) -> None:
    texts = ["Acme Corp rose", "a"]
    encoding = tokenizer(texts, padding=True, return_offsets_mapping=True, return_tensors="pt")
    casing = casing_batch(texts, encoding["offset_mapping"])
    assert casing.shape == encoding["input_ids"].shape
    assert casing[1].tolist() == [NONE, LOWER] + [NONE] * (casing.shape[1] - 2)


def test_a_casing_model_starts_as_its_encoder_and_needs_the_classes(tokenizer: AutoTokenizer) -> None:
    plain = MultitaskModel.from_base(str(default_base_model_dir())).eval()
    cased = MultitaskModel.from_base(str(default_base_model_dir()), casing=True).eval()
    cased.load_state_dict(plain.state_dict(), strict=False)  # same heads; the casing table stays at zero
    texts = ["Apple shares rose after the FED decision", "apple"]
    encoding = tokenizer(texts, padding=True, return_offsets_mapping=True, return_tensors="pt")
    with torch.no_grad():
        before = plain(**encoder_inputs(plain, texts, encoding, CPU))
        after = cased(**encoder_inputs(cased, texts, encoding, CPU))
        assert torch.equal(before.hidden, after.hidden) and torch.equal(before.ner, after.ner)
        with pytest.raises(ValueError, match="pass casing_ids"):
            cased(encoding["input_ids"], encoding["attention_mask"])
        torch.nn.init.normal_(cased.casing.weight)  # type: ignore[union-attr]
        moved = cased(**encoder_inputs(cased, texts, encoding, CPU))
    assert not torch.allclose(before.hidden, moved.hidden)  # the classes do reach the encoder


def test_the_choice_is_saved_and_a_model_from_before_loads_without_casing(tiny_model_dir: Path,
                                                                         tmp_path: Path) -> None:
    cased = MultitaskModel.from_base(str(tiny_model_dir), casing=True)
    torch.nn.init.normal_(cased.casing.weight)  # type: ignore[union-attr]
    (tmp_path / "cased").mkdir()
    cased.save(tmp_path / "cased")
    again = MultitaskModel.load(tmp_path / "cased")
    assert again.reads_casing and torch.equal(again.casing.weight, cased.casing.weight)  # type: ignore[union-attr]
    (tmp_path / "plain").mkdir()
    MultitaskModel.from_base(str(tiny_model_dir)).save(tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    del config[CASING_KEY]  # as every model saved before casing existed
    (tmp_path / "plain" / "config.json").write_text(json.dumps(config))
    assert not MultitaskModel.load(tmp_path / "plain").reads_casing


def _cased_names(words: list[str]) -> str:
    """A CoNLL file where the same word is a company when capitalised and an ordinary word when not: only case
    tells them apart, and an uncased encoder sees the two sentences as one."""
    lines = []
    for word in words:
        for form, tag in ((word.capitalize(), "B-ORG"), (word, "O")):
            lines.append(f"shares\tO\nof\tO\n{form}\t{tag}\nrose\tO\n")
    return "\n".join(lines)


def test_casing_lets_the_model_learn_what_only_case_tells(tiny_model_dir: Path, tmp_path: Path) -> None:
    train_words = ["amber", "river", "stone", "summit", "harbor", "meadow", "beacon", "falcon", "maple", "orbit",
                   "pioneer", "quartz", "willow", "cedar", "granite", "horizon"]
    valid_words = ["marble", "lantern", "thunder", "velvet", "compass", "glacier"]  # words never trained on
    train = write(tmp_path / "train.conll", _cased_names(train_words))
    valid = write(tmp_path / "valid.conll", _cased_names(valid_words))

    def ner_f1(*flags: str) -> float:
        result = run_train("--data", f"conll={train}", "--validation-data", f"conll={valid}",
                           "--base-model", str(tiny_model_dir), "--max-steps", "60", "--batch-size", "8",
                           "--learning-rate", "5e-3", "--max-length", "16", "--patience", "0", "--no-calibrate",
                           "--models-dir", str(tmp_path), *flags)
        return float(result.metrics["validation"]["ner"]["f1"])

    # Without casing both sentences of a pair get the same tags, so half the pairs are wrong at best (F1 <= 2/3).
    assert ner_f1("--no-casing", "--version", "plain") <= 2 / 3 + 1e-9
    assert ner_f1("--casing", "--version", "cased") >= 0.95
