"""Data loaders, flag syntax, config files and metrics of the fine-tuning stage (no model training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.data.conll import read_conll, to_bio
from finetune.data.entities import read_finpulse, read_sentfin, silver_span
from finetune.data.labelled import read_labelled_news
from finetune.data.sources import ColumnDefaults, DataSpec, load_source
from finetune.examples import Span
from monitor.core.errors import DataError
from tests.helpers import one_line_error, write

SAMPLE = Path(__file__).resolve().parents[2] / "finetune" / "sample_data"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


# --- labelled text (csv / jsonl / tfns) ------------------------------------------------------------------------
def test_csv_with_label_map_and_tfns_preset(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", 'text,label\n"$X - cut at BTIG, shares fall",0\nUp big,1\nFlat day,2\n')
    examples = load_source(DataSpec.parse(f"tfns={path}"))
    assert [e.sentiment for e in examples] == ["negative", "positive", "neutral"]
    assert examples[0].text == "$X - cut at BTIG, shares fall" and examples[0].where == f"{path}:2"
    assert examples[0].tasks == {"sentiment"} and not examples[0].ner
    same = load_source(DataSpec.parse(f"csv={path}?label_map=0=negative,1=positive,2=neutral"))
    assert [e.sentiment for e in same] == [e.sentiment for e in examples]


def test_jsonl_text_source_with_custom_columns(tmp_path: Path) -> None:
    rows = '{"sentence": "Shares soar", "y": "Bullish"}\n\n{"sentence": "Meh", "y": "neu"}\n'
    path = write(tmp_path / "t.jsonl", rows)
    examples = load_source(DataSpec.parse(f"jsonl={path}"), ColumnDefaults("sentence", "y"))
    assert [(e.text, e.sentiment) for e in examples] == [("Shares soar", "positive"), ("Meh", "neutral")]


@pytest.mark.parametrize(
    ("content", "spec", "parts"),
    [
        ("text,y\nhello,0\n", "csv", [":2:", "missing column 'label'", "--label-column"]),
        ("text,label\nfine,positive\nbad,3\n", "csv", [":3:", "unknown label '3'"]),
        ("text,label\nfine,0\n", "csv", [":2:", "unknown label '0'", "--label-map"]),
        ("text,label\nfine,7\n", "tfns", [":2:", "unknown label '7'"]),
        ("", "csv", [":1:", "empty file"]),
        ('{"text": "a", "label": "positive"}\n{"text": "b"\n', "jsonl", [":2:", "not valid JSON"]),
        ("", "jsonl", [":1:", "empty file"]),
    ],
)
def test_bad_labelled_text_is_one_line_naming_file_and_line(tmp_path: Path, content: str, spec: str,
                                                             parts: list[str]) -> None:
    path = write(tmp_path / f"bad.{'jsonl' if spec == 'jsonl' else 'csv'}", content)
    with pytest.raises(DataError) as excinfo:
        load_source(DataSpec.parse(f"{spec}={path}"))
    one_line_error(excinfo, str(path), *parts)


@pytest.mark.parametrize(
    ("spec", "part"),
    [("nonsense", "expected KIND=PATH"), ("xml=a.xml", "unknown kind 'xml'"), ("csv=", "path is empty"),
     ("csv=a.csv?colour=red", "unknown option(s) ['colour']"), ("conll=x.txt?misc", "not key=value")],
)
def test_bad_data_flags(spec: str, part: str) -> None:
    with pytest.raises(DataError) as excinfo:
        DataSpec.parse(spec)
    one_line_error(excinfo, part)


def test_source_weight_option(tmp_path: Path) -> None:
    import random

    from finetune.data.sources import load_sources
    from finetune.features import epoch_indices

    path = write(tmp_path / "t.csv", "text,label\nup,positive\ndown,negative\n")
    examples = load_sources([DataSpec.parse(f"csv={path}?weight=2.5"), DataSpec.parse(f"csv={path}")])
    assert [e.weight for e in examples] == [2.5, 2.5, 1.0, 1.0]
    counts = [epoch_indices([2.5, 0.5], random.Random(seed)) for seed in range(200)]
    assert all(c.count(0) in (2, 3) and c.count(1) in (0, 1) for c in counts)
    assert 0.4 < sum(c.count(1) for c in counts) / 200 < 0.6
    with pytest.raises(DataError) as excinfo:
        load_sources([DataSpec.parse(f"csv={path}?weight=0")])
    one_line_error(excinfo, "weight='0'", "> 0")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        load_source(DataSpec.parse(f"csv={tmp_path / 'nope.csv'}"))
    one_line_error(excinfo, "nope.csv", "file not found")


# --- CoNLL -----------------------------------------------------------------------------------------------------
CONLL_IO = """-DOCSTART- -X- O O

SILICON NNP - I-ORG
VALLEY NNP - I-ORG
BANK NNP - I-ORG
in IN - O
California NNP - I-LOC
and CC - O
John NNP - I-PER
Smith NNP - I-PER
signed VBD - O
Form NNP - I-MISC
10-K NNP - I-MISC

Acme NNP - B-ORG
Corp NNP - I-ORG
Beta NNP - B-ORG
"""


def test_conll_io_is_converted_to_bio_and_misc_dropped(tmp_path: Path) -> None:
    examples = read_conll(write(tmp_path / "ner.txt", CONLL_IO))
    assert len(examples) == 2
    first = examples[0]
    assert first.text == "SILICON VALLEY BANK in California and John Smith signed Form 10-K"
    assert [(first.text[s.start:s.end], s.type) for s in first.spans] == [
        ("SILICON VALLEY BANK", "ORG"), ("California", "LOC"), ("John Smith", "PER")]  # MISC dropped
    assert first.ner and first.sentiment is None and first.where.endswith(":3")
    second = examples[1]  # BIO input: B- separates adjacent entities of one type
    assert [(second.text[s.start:s.end], s.type) for s in second.spans] == [("Acme Corp", "ORG"), ("Beta", "ORG")]
    assert to_bio(["I-ORG", "I-ORG", "O", "I-PER", "I-LOC"]) == ["B-ORG", "I-ORG", "O", "B-PER", "B-LOC"]


def test_conll_long_sentences_are_chunked_between_entities(tmp_path: Path) -> None:
    lines = [f"w{i} NN - O" for i in range(8)] + ["Big NNP - I-ORG", "Bank NNP - I-ORG"] + ["x NN - O"] * 3
    examples = read_conll(write(tmp_path / "long.txt", "\n".join(lines) + "\n"), max_words=9)
    assert [len(e.text.split()) for e in examples] == [8, 5]
    assert [(e.text[s.start:s.end], s.type) for e in examples for s in e.spans] == [("Big Bank", "ORG")]


@pytest.mark.parametrize(("content", "line"), [("Acme NNP ORG-B\n", 1), ("ok O\n\nlonely\n", 3), ("", 1)])
def test_bad_conll_columns(tmp_path: Path, content: str, line: int) -> None:
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(DataError) as excinfo:
        read_conll(path)
    one_line_error(excinfo, f"{path}:{line}:")


# --- finpulse JSON lines, SEntFiN, labelled_news -----------------------------------------------------------------
def test_finpulse_records_and_offset_checks(tmp_path: Path) -> None:
    good = {"headline": "Tata Motors surges while Maruti slumps", "sentiment": "neutral", "entities": [
        {"start": 0, "end": 11, "type": "ORG", "text": "Tata Motors", "sentiment": "positive"},
        {"start": 25, "end": 31, "type": "ORG", "text": "Maruti", "sentiment": "negative"}]}
    unlabelled = {"headline": "$ACME in focus", "tickers": ["ACME"]}
    path = write(tmp_path / "f.jsonl", json.dumps(good) + "\n" + json.dumps(unlabelled) + "\n")
    first, second = read_finpulse(path)
    assert first.spans == [Span(0, 11, "ORG", "positive"), Span(25, 31, "ORG", "negative")]
    assert first.tasks == {"sentiment", "ner", "entity"}
    assert second.tasks == set()  # nothing labelled: every head is masked for it
    good["entities"][1]["start"] = 24  # type: ignore[index]
    bad = write(tmp_path / "bad.jsonl", json.dumps(unlabelled) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError) as excinfo:
        read_finpulse(bad)
    one_line_error(excinfo, f"{bad}:2", "entities[1]", "does not match")


def test_sample_corpus_loads() -> None:
    if not (SAMPLE / "train.jsonl").exists():
        pytest.skip("finetune/sample_data is not there yet")
    train = read_finpulse(SAMPLE / "train.jsonl")
    assert len(train) >= 300 and all(e.ner for e in train)
    assert {s.type for e in train for s in e.spans} >= {"ORG", "LOC", "PER", None}  # None: TICKER spans


def test_sentfin_silver_spans_and_seeded_split(tmp_path: Path) -> None:
    records = [{"s_no": i, "title": f"Tata Motors and Tata Steel rise {i}", "entities": [
        {"entity": "Tata", "sentiment": "neutral"}, {"entity": "Tata Motors", "sentiment": "positive"},
        {"entity": "Nowhere Inc", "sentiment": "negative"}]} for i in range(40)]
    path = write(tmp_path / "s.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    everything = read_sentfin(path)
    first = everything[0]
    assert [(first.text[s.start:s.end], s.sentiment) for s in first.spans] == [
        ("Tata Motors", "positive"), ("Tata", "neutral")]  # "Tata" placed where it does not overlap
    assert first.tasks == {"entity"} and not first.ner
    train, held = read_sentfin(path, part="train"), read_sentfin(path, part="heldout")
    assert len(train) + len(held) == 40 and 0 < len(held) < 40
    assert {e.text for e in train}.isdisjoint({e.text for e in held})
    assert [e.text for e in held] == [e.text for e in read_sentfin(path, part="heldout")]
    assert silver_span("RIL up; ril down", "RIL", [(0, 3)]) == (8, 11)


def test_shared_sentfin_split_sizes() -> None:
    path = SHARED / "sentfin" / "sentfin_entities.derived.jsonl"
    if not path.exists():
        pytest.skip(f"{path} absent (a fresh clone has no ../shared)")
    held = read_sentfin(path, part="heldout")
    assert 0.17 < len(held) / 10_753 < 0.23


def test_labelled_news_table(db_url: str) -> None:
    from monitor.core import db
    from schemas.registry import LabelledNews

    engine = db.make_engine(db_url)
    with db.session_scope(engine) as session:
        session.add(LabelledNews(text="Acme jumps", sentiment="positive", split="train"))
        session.add(LabelledNews(text="Acme sues Beta", sentiment=None, split="train", entities=[
            {"start": 0, "end": 4, "type": "ORG", "text": "Acme", "sentiment": "neutral"},
            {"start": 10, "end": 14, "type": "ORG", "text": "Beta", "sentiment": "negative"}]))
        session.add(LabelledNews(text="Oops", sentiment="sideways", split="gold"))
    engine.dispose()
    first, second = read_labelled_news(db_url, split="train")
    assert first.tasks == {"sentiment"} and second.tasks == {"ner", "entity"}
    assert second.spans[1] == Span(10, 14, "ORG", "negative")
    assert [e.text for e in read_labelled_news(db_url, since_id=1, split="train")] == ["Acme sues Beta"]
    with pytest.raises(DataError) as excinfo:
        read_labelled_news(db_url)
    one_line_error(excinfo, "labelled_news id=3", "unknown label 'sideways'")
