"""The conversions behind ``finpulse data fetch``: upstream files -> the canonical files of the data directory."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from finetune.data.conll import read_conll
from finetune.data.convert import finer_ord_conll, sentfin_jsonl, stocknet_stream
from monitor.core.errors import DataError
from tests.helpers import one_line_error, write

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_sentfin_csv_to_json_lines_reads_malformed_dict_literals() -> None:
    csv_text = ('S No.,Title,Decisions,Words\n'
                '1,Sebi fines Osian\'s Art Fund,"{\'Sebi\': \'neutral\', \'Osian\'s Art Fund\': \'negative\'}",5\n'
                '2,"Dr Reddy\'s up, Cipla flat","{""Dr Reddy\'s"": \'positive\', \'Cipla\': \'neutral\'}",5\n')
    rows = [json.loads(line) for line in sentfin_jsonl(csv_text.encode()).decode().splitlines()]
    assert rows == [
        {"s_no": 1, "title": "Sebi fines Osian's Art Fund", "words": 5, "entities": [
            {"entity": "Sebi", "sentiment": "neutral"}, {"entity": "Osian's Art Fund", "sentiment": "negative"}]},
        {"s_no": 2, "title": "Dr Reddy's up, Cipla flat", "words": 5, "entities": [
            {"entity": "Dr Reddy's", "sentiment": "positive"}, {"entity": "Cipla", "sentiment": "neutral"}]}]
    with pytest.raises(DataError) as excinfo:
        sentfin_jsonl(b"S No.,Title,Decisions,Words\n1,Title,not a dict,2\n")
    one_line_error(excinfo, "SEntFiN.csv:2", "not an entity->sentiment dict")


@pytest.mark.skipif(not (SHARED / "sentfin" / "SEntFiN.csv").is_file(), reason=f"{SHARED}/sentfin absent")
def test_sentfin_conversion_rebuilds_the_canonical_file_byte_for_byte() -> None:
    built = sentfin_jsonl((SHARED / "sentfin" / "SEntFiN.csv").read_bytes())
    assert built == (SHARED / "sentfin" / "sentfin_entities.derived.jsonl").read_bytes()


def test_finer_ord_csv_to_conll(tmp_path: Path) -> None:
    csv_text = ("gold_label,gold_token,doc_idx,sent_idx\n"
                "1,Jim,0,0\n2,Henneberry,0,0\n0,joined,0,0\n5,Acme,0,0\n6,Corp,0,0\n0,,0,0\n0,.,0,0\n"
                "3,London,0,1\n0,rallied,0,1\n0,fell,1,0\n")
    conll = finer_ord_conll(csv_text.encode())
    assert conll.decode() == ("Jim\tB-PER\nHenneberry\tI-PER\njoined\tO\nAcme\tB-ORG\nCorp\tI-ORG\n.\tO\n\n"
                              "London\tB-LOC\nrallied\tO\n\nfell\tO\n\n")
    examples = read_conll(write(tmp_path / "f.conll", conll.decode()))
    assert [(e.text, [(s.start, s.end, s.type) for s in e.spans]) for e in examples] == [
        ("Jim Henneberry joined Acme Corp .", [(0, 14, "PER"), (22, 31, "ORG")]),
        ("London rallied", [(0, 6, "LOC")]), ("fell", [])]
    with pytest.raises(DataError) as excinfo:
        finer_ord_conll(b"gold_label,gold_token,doc_idx,sent_idx\n9,x,0,0\n")
    one_line_error(excinfo, "CSV:2", "gold_label '9' is not 0..6")


def _tweet(created: str, tweet_id: str, text: str, lang: str = "en") -> str:
    return json.dumps({"created_at": created, "id": int(tweet_id), "id_str": tweet_id, "text": text, "lang": lang,
                       "user": {"screen_name": "dropped"}})


def test_stocknet_archive_to_one_sorted_stream(tmp_path: Path) -> None:
    files = {  # written here: same shape as StockNet's tweet/raw/<TICKER>/<DATE> JSON lines
        "stocknet-dataset-abc/tweet/raw/MSFT/2014-01-02": [
            _tweet("Thu Jan 02 09:00:00 +0000 2014", "20", "$MSFT up,\nsays \"analyst\"")],
        "stocknet-dataset-abc/tweet/raw/AAPL/2014-01-02": [
            _tweet("Thu Jan 02 09:00:00 +0000 2014", "20", "$MSFT up,\nsays \"analyst\""),
            _tweet("Wed Jan 01 23:30:00 +0000 2014", "10", "$AAPL late news", "und")],
        "stocknet-dataset-abc/tweet/preprocessed/AAPL/2014-01-02": ["not read"],
        "stocknet-dataset-abc/price/raw/AAPL.csv": ["not read"],
    }
    archive = tmp_path / "stocknet.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, lines in files.items():
            data = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert stocknet_stream(archive).decode() == (
        "created_at_utc,ticker,tweet_id,text,lang,source_file_date\r\n"
        "2014-01-01T23:30:00Z,AAPL,10,$AAPL late news,und,2014-01-02\r\n"
        '2014-01-02T09:00:00Z,AAPL,20,"$MSFT up, says ""analyst""",en,2014-01-02\r\n'
        '2014-01-02T09:00:00Z,MSFT,20,"$MSFT up, says ""analyst""",en,2014-01-02\r\n')
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(DataError) as excinfo:
        stocknet_stream(empty)
    one_line_error(excinfo, "no tweet/raw/<TICKER>/<DATE> files")
