"""News-domain data: FiNER-ORD through the ``conll`` source, SEntFiN headlines as document sentiment
(``sentfin=FILE?doc=true``) and per-class recall in the sentiment metrics, down to ``finpulse eval``."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from finetune.data.conll import read_conll
from finetune.data.sources import DataSpec, load_source
from finetune.data.splits import normalize_text
from finetune.metrics import classification
from monitor.core.errors import DataError
from tests.finetune.train_helpers import run_cli
from tests.helpers import one_line_error, write

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FINER_VALID = SHARED / "finer_ord" / "finer_ord_validation.conll"
SENTFIN = SHARED / "sentfin" / "sentfin_entities.derived.jsonl"

# FiNER-ORD's layout (token<TAB>tag, BIO) with its two quirks: a zero-width token inside a name, and a blank line
# (a false sentence break of the source) inside "Palo Alto Networks".
FINER_LIKE = ("Jim\tB-PER\nHenneberry\tI-PER\n\u200b\tI-PER\n,\tO\nof\tO\nAcme\tB-ORG\nCorp\tI-ORG\n.\tO\n\n"
              "Sponsored\tO\nPalo\tB-ORG\nAlto\tI-ORG\n\nNetworks\tI-ORG\nrose\tO\nin\tO\nLondon\tB-LOC\n.\tO\n\n"
              "Shares\tO\nfell\tO\n.\tO\n\n")


def _spans(example_text: str, spans: list[tuple[int, int, str | None]]) -> list[tuple[str, str | None]]:
    return [(example_text[start:end], kind) for start, end, kind in spans]


def test_finer_ord_layout_reads_as_ner(tmp_path: Path) -> None:
    examples = load_source(DataSpec.parse(f"conll={write(tmp_path / 'finer.conll', FINER_LIKE)}"))
    assert [e.text for e in examples] == ["Jim Henneberry , of Acme Corp .",
                                          "Sponsored Palo Alto Networks rose in London .", "Shares fell ."]
    found = [_spans(e.text, [(s.start, s.end, s.type) for s in e.spans]) for e in examples]
    assert found == [[("Jim Henneberry", "PER"), ("Acme Corp", "ORG")],
                     [("Palo Alto Networks", "ORG"), ("London", "LOC")], []]
    assert all(e.ner and e.tasks == {"ner"} for e in examples)
    assert [e.where.rsplit(":", 1)[1] for e in examples] == ["1", "10", "20"]


def test_false_breaks_are_joined_only_in_bio_files_and_never_across_documents(tmp_path: Path) -> None:
    # IO tags (SEC NER): an I-PER opening a sentence is a new entity there, so nothing is joined.
    io_file = write(tmp_path / "io.txt", "John NNP - I-PER\nSmith NNP - I-PER\n\nMary NNP - I-PER\nsigned VBD - O\n")
    assert [e.text for e in read_conll(io_file)] == ["John Smith", "Mary signed"]
    docs = write(tmp_path / "docs.conll", "-DOCSTART- -X- O O\n\nAcme\tB-ORG\n\n-DOCSTART- -X- O O\n\n"
                                          "Corp\tI-ORG\nfell\tO\n\nrose\tO\n")
    examples = read_conll(docs)
    assert [e.text for e in examples] == ["Acme", "Corp fell", "rose"]
    assert [[(s.start, s.end, s.type) for s in e.spans] for e in examples] == [[(0, 4, "ORG")], [(0, 4, "ORG")], []]
    # A zero-width B- token hands its B- to the next token, so two adjacent names stay two.
    begin = write(tmp_path / "begin.conll", "Ann\tB-PER\n\u200b\tB-PER\nLee\tI-PER\n")
    assert [(s.start, s.end) for s in read_conll(begin)[0].spans] == [(0, 3), (4, 7)]


@pytest.mark.skipif(not FINER_VALID.is_file(), reason=f"{FINER_VALID} absent (public data beside the checkout)")
def test_real_finer_ord_validation_matches_its_provenance_counts() -> None:
    blocks = [b for b in FINER_VALID.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    assert len(blocks) == 402  # PROVENANCE.md: 402 sentences
    whole = read_conll(FINER_VALID, max_words=10**6)
    # Four of the 402 breaks fall inside a name ("Yahoo ! | Finance", "UK | Markets") and are joined.
    assert len(whole) == 398
    counts = Counter(span.type for example in whole for span in example.spans)
    assert counts == {"PER": 138, "LOC": 193, "ORG": 274}  # PROVENANCE.md: 138 / 193 / 274
    chunked = load_source(DataSpec.parse(f"conll={FINER_VALID}"))  # the default 40-word chunks keep every entity
    assert Counter(s.type for e in chunked for s in e.spans) == counts
    assert sum(len(e.text.split()) for e in chunked) == 10_232  # 10,233 tokens less one zero-width token
    assert not any("\u200b" in e.text for e in chunked)


SENTFIN_ROWS = [
    {"s_no": 1, "title": "Infosys rallies on record deal",
     "entities": [{"entity": "Infosys", "sentiment": "positive"}]},
    {"s_no": 2, "title": "Infosys up, Wipro down", "entities": [{"entity": "Infosys", "sentiment": "positive"},
                                                               {"entity": "Wipro", "sentiment": "negative"}]},
    {"s_no": 3, "title": "TCS and HCL slide", "entities": [{"entity": "TCS", "sentiment": "negative"},
                                                          {"entity": "HCL", "sentiment": "negative"}]},
    {"s_no": 4, "title": "Sebi issues circular", "entities": [{"entity": "Sebi", "sentiment": "neutral"}]},
    {"s_no": 5, "title": "Sebi issues  circular", "entities": [{"entity": "Sebi", "sentiment": "neutral"}]},
    {"s_no": 6, "title": "Yes Bank news", "entities": [{"entity": "Yes Bank", "sentiment": "positive"}]},
    {"s_no": 7, "title": "yes bank news", "entities": [{"entity": "Yes Bank", "sentiment": "negative"}]},
    {"s_no": 8, "title": "Rupee unchanged; Nifty hits a high", "entities": [
        {"entity": "Rupee", "sentiment": "neutral"}, {"entity": "Markets", "sentiment": "neutral"}]},
]


def test_sentfin_headlines_as_document_sentiment(tmp_path: Path) -> None:
    path = write(tmp_path / "sentfin.jsonl", "".join(json.dumps(row) + "\n" for row in SENTFIN_ROWS))
    docs = load_source(DataSpec.parse(f"sentfin={path}?doc=true"))
    # Conflicting entities (2) and duplicates that disagree (6/7) have no document label; agreeing duplicates
    # (4/5) become one example; an entity absent from its title (8: "Markets") does not matter for the label.
    assert [(e.text, e.sentiment) for e in docs] == [
        ("Infosys rallies on record deal", "positive"), ("TCS and HCL slide", "negative"),
        ("Sebi issues circular", "neutral"), ("Rupee unchanged; Nifty hits a high", "neutral")]
    assert all(e.tasks == {"sentiment"} and not e.spans and e.source == "sentfin" for e in docs)
    assert docs[1].where == f"{path}:3"
    with pytest.raises(DataError) as excinfo:
        load_source(DataSpec.parse(f"sentfin={path}?doc=maybe"))
    one_line_error(excinfo, "doc='maybe'", "expected true or false")
    with pytest.raises(DataError) as excinfo:
        load_source(DataSpec.parse(f"sentfin={path}?doc=true&part=test"))
    one_line_error(excinfo, "part='test'", "expected all, train or heldout")


def _split(path: Path, part: str, doc: bool) -> set[str]:
    spec = f"sentfin={path}?part={part}&heldout=0.3&seed=7" + ("&doc=true" if doc else "")
    return {normalize_text(e.text) for e in load_source(DataSpec.parse(spec))}


def test_document_and_entity_examples_share_one_split(tmp_path: Path) -> None:
    rows = [{"s_no": i, "title": f"Company {i} shares {'rise' if i % 3 else 'fall'}",
             "entities": [{"entity": f"Company {i}", "sentiment": "positive" if i % 3 else "negative"}]}
            for i in range(200)]
    path = write(tmp_path / "many.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    doc_train, doc_held = _split(path, "train", True), _split(path, "heldout", True)
    entity_train, entity_held = _split(path, "train", False), _split(path, "heldout", False)
    assert doc_held == entity_held and doc_train == entity_train  # every title matched: identical splits
    assert doc_held and not doc_held & (doc_train | entity_train)
    assert 40 <= len(doc_held) <= 80  # about 30 % of 200


@pytest.mark.skipif(not SENTFIN.is_file(), reason=f"{SENTFIN} absent (public data beside the checkout)")
def test_real_sentfin_heldout_headlines_never_reach_training() -> None:
    held = _split(SENTFIN, "heldout", True) | _split(SENTFIN, "heldout", False)
    train = _split(SENTFIN, "train", True) | _split(SENTFIN, "train", False)
    assert not held & train
    docs = load_source(DataSpec.parse(f"sentfin={SENTFIN}?doc=true"))
    counts = Counter(e.sentiment for e in docs)
    # 10,753 headlines less 1,233 with conflicting entity sentiments, less duplicate titles.
    assert 9_400 <= len(docs) <= 9_520 and min(counts.values()) > 2_000


def test_classification_reports_recall_per_class_and_the_gap() -> None:
    report = classification(["positive", "positive", "neutral", "neutral", "negative"],
                            ["neutral", "positive", "neutral", "neutral", "negative"])
    assert report["recall"] == {"negative": 1.0, "neutral": 1.0, "positive": 0.5}
    assert report["recall_gap"] == pytest.approx(0.5)
    assert report["per_class"]["positive"]["recall"] == 0.5 and report["macro_f1"] > 0  # earlier keys kept


def test_eval_prints_entity_f1_and_recall_per_class(tiny_model_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoTokenizer

    from finetune.export import save_version
    from finetune.model import MultitaskModel

    model = MultitaskModel.from_base(str(tiny_model_dir))
    with torch.no_grad():  # constant heads: always neutral, every token B-ORG
        for head, bias in ((model.sentiment_head, [0, math.log(4), 0]), (model.ner_head, [0, 10, 0, 0, 0, 0, 0])):
            head.weight.zero_()
            head.bias.copy_(torch.tensor(bias))
    path = save_version(model, AutoTokenizer.from_pretrained(tiny_model_dir), tmp_path, "v-const", base_model="tiny",
                        max_length=32, train_args={}, metrics={}, data_summary={})
    conll = write(tmp_path / "finer.conll", FINER_LIKE)
    sentfin = write(tmp_path / "sentfin.jsonl", "".join(json.dumps(row) + "\n" for row in SENTFIN_ROWS))
    data = [f"conll={conll}", f"sentfin={sentfin}?doc=true"]
    if FINER_VALID.is_file():
        data.append(f"conll={FINER_VALID}")
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", "--model", str(path), "--precision", "fp32",
                                *[arg for spec in data for arg in ("--data", spec)])
    assert code == 0, err
    report = json.loads(stdout)
    assert report["sentiment"]["recall"] == {"negative": 0.0, "neutral": 1.0, "positive": 0.0}
    assert report["sentiment"]["recall_gap"] == 1.0 and report["sentiment"]["macro_f1"] == pytest.approx(2 / 9)
    assert report["ner"]["entities"] == 4 + (605 if FINER_VALID.is_file() else 0)  # 138 + 193 + 274 = 605
    assert 0 <= report["ner"]["f1"] < 0.5 and set(report["ner"]["per_type"]) <= {"ORG", "PER", "LOC"}
