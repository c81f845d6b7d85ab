"""The ``text`` data source: unlabelled in-domain text for distillation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.data.sources import DataSpec, load_source, load_sources
from finetune.data.text import settle_unlabelled, unlabelled_to_training
from finetune.examples import Example
from monitor.core.errors import DataError
from tests.helpers import one_line_error, write

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
STOCKNET = SHARED / "stocknet_stream" / "stocknet_tweets_stream.csv"
SENTFIN = SHARED / "sentfin" / "SEntFiN.csv"


def test_texts_are_read_once_unlabelled_and_sampled(tmp_path: Path) -> None:
    path = write(tmp_path / "tweets.csv", "ticker,text,lang\nAAPL,$AAPL up,en\nMSFT,$AAPL  UP,en\nX,,en\n"
                                          "GOOG,Alphabet falls,en\nSAN,Santander puja,es\n")
    examples = load_source(DataSpec.parse(f"text={path}"))
    assert [e.text for e in examples] == ["$AAPL up", "Alphabet falls", "Santander puja"]  # near-duplicate once
    assert all(e.tasks == set() and e.source == "text" and not e.spans for e in examples)
    assert examples[0].where == f"{path}:2"
    english = load_source(DataSpec.parse(f"text={path}?lang=en"))
    assert [e.text for e in english] == ["$AAPL up", "Alphabet falls"]
    sampled = load_sources([DataSpec.parse(f"text={path}?max_rows=2&seed=3&weight=0.5")])
    assert len(sampled) == 2 and {e.text for e in sampled} <= {e.text for e in examples}
    assert all(e.weight == 0.5 for e in sampled)
    assert sampled == load_sources([DataSpec.parse(f"text={path}?max_rows=2&seed=3&weight=0.5")])  # seeded
    lines = write(tmp_path / "titles.jsonl", "\n".join(json.dumps({"title": t}) for t in ("A", "B")) + "\n")
    assert [e.text for e in load_source(DataSpec.parse(f"text={lines}?column=title"))] == ["A", "B"]


def test_bad_text_sources_are_one_line_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "titles.csv", "Title\nAcme jumps\n")
    with pytest.raises(DataError) as error:
        load_source(DataSpec.parse(f"text={path}"))
    one_line_error(error, f"{path}:2: missing column 'text'", "column=")
    with pytest.raises(DataError) as error:
        load_source(DataSpec.parse(f"text={path}?column=Title&lang=en"))
    one_line_error(error, "lang=en needs a 'lang' column", "drop the option")
    with pytest.raises(DataError) as error:
        load_source(DataSpec.parse(f"text={path}?column=Title&max_rows=many"))
    one_line_error(error, "max_rows='many'", "whole number")
    with pytest.raises(DataError) as error:
        DataSpec.parse(f"text={path}?label=x")
    one_line_error(error, "unknown option(s) ['label'] for text", "column, lang, max_rows, seed, weight")


def test_unlabelled_texts_drawn_for_validation_go_back_to_training() -> None:
    labelled, text = Example("Acme jumps", "positive"), Example("Beta slides", source="text")
    assert unlabelled_to_training([], [labelled, text]) == ([text], [labelled])


def test_unlabelled_copies_of_labelled_texts_are_dropped() -> None:
    labelled, copy, text = Example("Acme jumps", "positive"), Example("ACME  jumps", source="text"), Example(
        "Beta slides", source="text")
    assert settle_unlabelled([labelled, copy, text], "teacher-dir") == [labelled, text]
    assert settle_unlabelled([labelled], None) == [labelled]
    with pytest.raises(DataError) as error:
        settle_unlabelled([labelled, text], None)
    one_line_error(error, "pass --teacher DIR")


@pytest.mark.skipif(not STOCKNET.is_file(), reason="../shared/data/stocknet_stream is not here (public data, "
                                                   "not in the repository)")
def test_the_stocknet_stream_as_unlabelled_text() -> None:
    examples = load_source(DataSpec.parse(f"text={STOCKNET}?max_rows=500&lang=en&seed=1"))
    assert len(examples) == len({e.text for e in examples}) == 500
    assert sum("$" in e.text for e in examples) > 250  # tweets about tickers: cashtags everywhere


@pytest.mark.skipif(not SENTFIN.is_file(), reason="../shared/data/sentfin is not here (public data, not in the "
                                                  "repository)")
def test_sentfin_titles_as_unlabelled_text() -> None:
    examples = load_source(DataSpec.parse(f"text={SENTFIN}?column=Title&max_rows=200"))
    assert len(examples) == 200 and all(e.text and e.tasks == set() for e in examples)
