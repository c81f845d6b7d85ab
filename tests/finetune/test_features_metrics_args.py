"""Splits, token alignment and BIO decoding, the metrics (checked by hand), and the train/eval arguments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from finetune.args import TrainArgs, parse_args
from finetune.data.splits import split_validation
from finetune.examples import Span
from finetune.features import decode_bio, encode, token_range
from finetune.metrics import classification, expected_calibration_error, ner_scores, word_tags
from monitor.core.errors import ConfigError
from tests.helpers import one_line_error, write


# --- splits, features, decoding ------------------------------------------------------------------------------
def test_validation_split_keeps_near_duplicates_together() -> None:
    from finetune.examples import Example

    examples = [Example(f"Story {i % 10} https://t.co/{i}", "neutral") for i in range(100)]
    train, valid = split_validation(examples, 0.3, seed=1)
    assert {e.text.split(" https")[0] for e in train}.isdisjoint({e.text.split(" https")[0] for e in valid})
    assert split_validation(examples, 0.3, seed=1)[1] == valid


def test_token_alignment_and_bio_decoding() -> None:
    from transformers import AutoTokenizer

    from finetune.base_model import default_base_model_dir
    from finetune.examples import BIO_LABELS, IGNORE, Example

    tokenizer = AutoTokenizer.from_pretrained(default_base_model_dir())
    text = "Tata Motors surges while Maruti slumps"
    example = Example(text, "neutral", [Span(0, 11, "ORG", "positive"), Span(25, 31, "ORG", "negative")], ner=True)
    (features,) = encode([example], tokenizer, max_length=32)
    encoding = tokenizer(text, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    labels = [BIO_LABELS[i] if i != IGNORE else None for i in features.ner]
    assert labels[0] is None and labels[-1] is None  # [CLS], [SEP]
    tata = token_range(offsets, 0, 11)
    assert tata is not None and labels[tata[0]] == "B-ORG" and all(x == "I-ORG" for x in labels[tata[0] + 1:tata[1]])
    assert [(s, e, lab) for s, e, lab in features.spans] == [(*tata, 2), (*token_range(offsets, 25, 31), 0)]  # type: ignore[misc]
    assert decode_bio(features.ner, offsets, text) == [(0, 11, "ORG"), (25, 31, "ORG")]
    # A word split in sub-words and tagged by pieces is widened to the whole word, once.
    o, b_per, b_loc = 0, BIO_LABELS.index("B-PER"), BIO_LABELS.index("B-LOC")
    assert decode_bio([o, b_per, b_loc, o], [(0, 0), (0, 2), (2, 4), (0, 0)], "Elon x") == [(0, 4, "PER")]


# --- metrics ---------------------------------------------------------------------------------------------------
def test_classification_report_by_hand() -> None:
    gold = ["negative", "negative", "neutral", "neutral", "positive"]
    pred = ["negative", "neutral", "neutral", "neutral", "neutral"]
    report = classification(gold, pred)
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["per_class"]["neutral"]["precision"] == pytest.approx(2 / 4)
    assert report["per_class"]["negative"]["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert report["confusion_matrix"]["rows_gold_columns_predicted"] == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_expected_calibration_error_by_hand() -> None:
    assert expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, False, True, True]) == pytest.approx(
        0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))
    assert math.isclose(expected_calibration_error([1.0], [True]), 0.0)


def test_ner_scores_are_entity_level() -> None:
    text = "John Smith joined Acme Corp in Paris"
    gold = word_tags(text, [(0, 10, "PER"), (18, 27, "ORG"), (31, 36, "LOC")])
    assert gold == ["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "B-LOC"]
    predicted = word_tags(text, [(0, 4, "PER"), (18, 27, "ORG")])  # half a name is a miss at entity level
    scores = ner_scores([gold], [predicted])
    assert (scores["precision"], scores["recall"]) == (pytest.approx(0.5), pytest.approx(1 / 3))
    assert scores["per_type"]["ORG"]["f1"] == pytest.approx(1.0)


# --- args and config -------------------------------------------------------------------------------------------
def test_config_file_then_flags_override(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "data:\n  - tfns=a.csv\n  - {kind: sentfin, path: s.jsonl, part: train}\n"
                                        "learning_rate: 5e-5\nepochs: 2\npromote: true\n")
    args = parse_args(TrainArgs, ["--config", str(config), "--epochs", "4", "--no-promote"], prog="t")
    assert args.data == ["tfns=a.csv", "sentfin=s.jsonl?part=train"]
    assert args.learning_rate == pytest.approx(5e-5) and args.epochs == 4.0 and args.promote is False
    flags = parse_args(TrainArgs, ["--config", str(config), "--data", "csv=b.csv"], prog="t")
    assert flags.data == ["csv=b.csv"]  # a flag replaces the config's list instead of appending to it
    as_json = write(tmp_path / "c.json", json.dumps({"data": ["csv=x.csv"], "max_steps": 3}))
    assert parse_args(TrainArgs, ["--config", str(as_json)], prog="t").max_steps == 3


@pytest.mark.parametrize(("content", "part"), [("nope: 1\n", "unknown option(s) ['nope']"),
                                               ("epochs: lots\n", "epochs='lots'"), ("- a\n", "expected a mapping")])
def test_bad_config_files(tmp_path: Path, content: str, part: str) -> None:
    config = write(tmp_path / "c.yaml", content)
    with pytest.raises(ConfigError) as excinfo:
        parse_args(TrainArgs, ["--config", str(config)], prog="t")
    one_line_error(excinfo, str(config), part)
    with pytest.raises(ConfigError) as excinfo:
        parse_args(TrainArgs, [], prog="t")
    one_line_error(excinfo, "no data")
