"""A tiny copy of the public data directory for the preset tests: every file the finance preset reads, in its
canonical format (TFNS CSV, SEntFiN JSON lines and CSV, FiNER-ORD and SEC NER CoNLL, the StockNet stream CSV),
made from the bundled sample corpus, then installed the way ``finpulse data fetch --from`` installs it (the real
fetch, with pins computed from these small files instead of the public ones)."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from finetune.data.fetch import fetch
from finetune.data.public import PUBLIC_FILES
from tests.finetune.train_helpers import SAMPLE

TFNS_LABELS = {"negative": 0, "positive": 1, "neutral": 2}


def _records(name: str, start: int, stop: int) -> list[dict[str, Any]]:
    lines = (SAMPLE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[start:stop]
    return [json.loads(line) for line in lines]


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _conll(path: Path, records: list[dict[str, Any]], io_tags: bool) -> None:
    """token<TAB>BIO (FiNER-ORD) or SEC NER's ``token POS - I-TYPE`` IO columns, a blank line between sentences."""
    lines = [] if not io_tags else ["-DOCSTART- -X- O O", ""]
    for record in records:
        text, offset, previous = record["headline"], 0, None
        for word in text.split():
            start = text.index(word, offset)
            offset = start + len(word)
            hit = next((e for e in record["entities"] if e["type"] in ("ORG", "PER", "LOC")
                        and e["start"] < offset and start < e["end"]), None)
            tag = "O" if hit is None else ("I" if io_tags or hit is previous else "B") + "-" + hit["type"]
            previous = hit
            lines.append(f"{word} NNP - {tag}" if io_tags else f"{word}\t{tag}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_sources(root: Path) -> Path:
    """The files at their data-directory paths under ``root`` (a source tree for ``fetch --from``)."""
    def train(start: int, stop: int) -> list[dict[str, Any]]:
        return _records("train", start, stop)

    def valid(start: int, stop: int) -> list[dict[str, Any]]:
        return _records("validation", start, stop)

    _csv(root / "tfns/sent_train.csv", ["text", "label"],
         [[r["headline"], TFNS_LABELS[r["sentiment"]]] for r in train(0, 40)])
    _csv(root / "tfns/sent_valid.csv", ["text", "label"],
         [[r["headline"], TFNS_LABELS[r["sentiment"]]] for r in valid(0, 12)])
    sentfin = train(40, 100)
    entities = [{e["text"]: e["sentiment"] for e in r["entities"]} for r in sentfin]
    (root / "sentfin").mkdir(parents=True, exist_ok=True)
    (root / "sentfin/sentfin_entities.derived.jsonl").write_text("".join(
        json.dumps({"s_no": i + 1, "title": r["headline"], "entities": [
            {"entity": name, "sentiment": label} for name, label in found.items()],
            "words": len(r["headline"].split())}) + "\n" for i, (r, found) in enumerate(zip(sentfin, entities,
                                                                                          strict=True))),
        encoding="utf-8")
    _csv(root / "sentfin/SEntFiN.csv", ["S No.", "Title", "Decisions", "Words"],
         [[i + 1, r["headline"], str(found), len(r["headline"].split())]
          for i, (r, found) in enumerate(zip(sentfin, entities, strict=True))])
    _conll(root / "finer_ord/finer_ord_train.conll", train(100, 130), io_tags=False)
    _conll(root / "finer_ord/finer_ord_validation.conll", valid(12, 24), io_tags=False)
    _conll(root / "sec_ner/FIN5_train.txt", train(130, 150), io_tags=True)
    _conll(root / "sec_ner/FIN3_test.txt", valid(24, 34), io_tags=True)
    tweets = [[f"2014-01-0{1 + i % 9}T10:00:00Z", "AAPL", 1000 + i, r["headline"], "en" if i % 5 else "es",
               "2014-01-01"] for i, r in enumerate(train(150, 175))]
    _csv(root / "stocknet_stream/stocknet_tweets_stream.csv",
         ["created_at_utc", "ticker", "tweet_id", "text", "lang", "source_file_date"], tweets)
    return root


def tiny_data_dir(tmp: Path) -> Path:
    """``tmp/data``: the tiny files installed by the real fetch (``--from``), with its manifest."""
    source = write_sources(tmp / "source")
    pins = tuple(replace(f, sha256=hashlib.sha256((source / f.name).read_bytes()).hexdigest(),
                         size=(source / f.name).stat().st_size)
                 for f in PUBLIC_FILES if (source / f.name).is_file())
    result = fetch(tmp / "data", source=source, files=pins)
    assert not result.refused and len(result.installed) == len(pins) == 9
    return tmp / "data"
