"""The bundled sample corpus (finetune/sample_data): format, labels, counts and split hygiene."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from monitor.scoring.cashtags import CASHTAG_RE

ROOT = Path(__file__).resolve().parents[2]
SPLITS = ("train", "validation")
LABELS = {"negative", "neutral", "positive"}
TYPES = {"ORG", "PER", "LOC", "TICKER"}
KEYS = {"id", "source", "published_at", "headline", "tickers", "sentiment", "entities"}
ENTITY_KEYS = {"start", "end", "type", "text", "sentiment"}
TICKER_RE = re.compile(r"^[A-Z][A-Z0-9]{0,9}([.-][A-Z0-9]{1,4})?$")


def _path(split: str) -> Path:
    # through importlib.resources so the test also holds for an installed package
    return Path(str(files("finetune").joinpath("sample_data", f"{split}.jsonl")))


def _load(split: str) -> list[dict[str, Any]]:
    with _path(split).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict[str, Any]]]:
    return {split: _load(split) for split in SPLITS}


def _all(corpus: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return corpus["train"] + corpus["validation"]


def _norm(headline: str) -> str:
    return re.sub(r"\W+", " ", headline.lower()).strip()


def test_records_have_the_documented_shape_and_valid_labels(corpus: dict[str, list[dict[str, Any]]]) -> None:
    for row in _all(corpus):
        assert set(row) == KEYS, row["id"]
        assert re.fullmatch(r"s\d{4}", row["id"])
        assert row["source"] == "finpulse-sample"
        headline = row["headline"]
        assert isinstance(headline, str) and 0 < len(headline) < 300 and headline == headline.strip()
        assert row["sentiment"] in LABELS
        assert isinstance(row["tickers"], list) and len(set(row["tickers"])) == len(row["tickers"])
        for ticker in row["tickers"]:
            assert TICKER_RE.match(ticker), (row["id"], ticker)


def test_entity_offsets_match_the_text(corpus: dict[str, list[dict[str, Any]]]) -> None:
    for row in _all(corpus):
        headline, last_end = row["headline"], 0
        for entity in row["entities"]:
            assert set(entity) == ENTITY_KEYS, row["id"]
            start, end = entity["start"], entity["end"]
            assert isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(headline)
            assert headline[start:end] == entity["text"], (row["id"], entity)
            assert start >= last_end, f"{row['id']}: entities overlap or are out of order"
            last_end = end
            assert entity["type"] in TYPES and entity["sentiment"] in LABELS, (row["id"], entity)
            # whole words only: a span never starts or ends inside a word
            assert start == 0 or not headline[start - 1].isalnum(), (row["id"], entity)
            assert end == len(headline) or not headline[end].isalnum(), (row["id"], entity)


def test_cashtags_are_ticker_entities_like_the_inference_rule(corpus: dict[str, list[dict[str, Any]]]) -> None:
    seen = 0
    for row in _all(corpus):
        found = {(m.start(), m.end()) for m in CASHTAG_RE.finditer(row["headline"])}
        marked = {(e["start"], e["end"]) for e in row["entities"] if e["type"] == "TICKER"}
        assert found == marked, row["id"]
        for entity in row["entities"]:
            if entity["type"] == "TICKER":
                assert entity["text"][1:] in row["tickers"], row["id"]
        seen += len(found)
    assert seen >= 20


def test_counts_balance_and_hard_cases(corpus: dict[str, list[dict[str, Any]]]) -> None:
    rows = _all(corpus)
    assert len(rows) >= 480 and len(corpus["train"]) >= 380 and len(corpus["validation"]) >= 80
    for split in ("train", "validation", None):
        part = corpus[split] if split else rows
        shares = Counter(r["sentiment"] for r in part)
        for label in LABELS:
            assert 0.25 <= shares[label] / len(part) <= 0.42, (split, shares)
    multi = [r for r in rows if len(r["entities"]) >= 2]
    conflicting = [r for r in rows if {"positive", "negative"} <= {e["sentiment"] for e in r["entities"]}]
    assert len(multi) >= 60 and len(conflicting) >= 30
    # the held-out split must exercise the hard cases too
    assert sum(len(r["entities"]) >= 2 for r in corpus["validation"]) >= 10
    assert sum(r in conflicting for r in corpus["validation"]) >= 5
    types = Counter(e["type"] for r in rows for e in r["entities"])
    assert min(types["ORG"], types["LOC"], types["PER"]) >= 30


def test_ids_unique_and_no_headline_in_both_splits(corpus: dict[str, list[dict[str, Any]]]) -> None:
    rows = _all(corpus)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    headlines = [_norm(r["headline"]) for r in rows]
    assert len(headlines) == len(set(headlines))
    train = {_norm(r["headline"]) for r in corpus["train"]}
    assert not train & {_norm(r["headline"]) for r in corpus["validation"]}


def test_timestamps_are_aware_utc_within_a_short_window(corpus: dict[str, list[dict[str, Any]]]) -> None:
    stamps = []
    for row in _all(corpus):
        stamp = datetime.fromisoformat(row["published_at"])
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0), row["id"]
        stamps.append(stamp)
    assert timedelta(days=5) <= max(stamps) - min(stamps) <= timedelta(days=14)


def test_project_loaders_read_the_corpus(corpus: dict[str, list[dict[str, Any]]]) -> None:
    from finetune.data.entities import read_finpulse
    from monitor.stream.news_file import ColumnMap, ReadStats, read_news

    for split in SPLITS:
        examples = read_finpulse(_path(split))
        assert len(examples) == len(corpus[split])
        assert all(e.sentiment in LABELS and e.ner for e in examples)
        stats = ReadStats()
        news = list(read_news(_path(split), ColumnMap(), stats=stats))
        assert stats.bad == 0 and len(news) == len(corpus[split])
        assert [n.news.id for n in news] == [r["id"] for r in corpus[split]]


def test_sample_data_ships_with_the_package() -> None:
    # setuptools' pyproject discovery finds namespace packages, so finetune/sample_data needs no __init__.py;
    # its files ship through the "*" package-data globs.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools_cfg = config["tool"]["setuptools"]
    assert setuptools_cfg["packages"]["find"].get("namespaces", True)
    assert any(p in ("finetune*", "finetune.*") for p in setuptools_cfg["packages"]["find"]["include"])
    globs = setuptools_cfg["package-data"]["*"]
    assert "*.jsonl" in globs and "*.md" in globs
    package_dir = Path(str(files("finetune")))
    for name in ("train.jsonl", "validation.jsonl", "README.md"):
        assert (package_dir / "sample_data" / name).is_file()
