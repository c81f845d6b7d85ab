"""Conversions from upstream files to the canonical files of the data directory (``finpulse data fetch``).

Each function reproduces the conversion documented in ``../shared/data/*/PROVENANCE.md``; the SHA-256 pins of
:mod:`finetune.data.public` check the result, so a conversion that drifts is refused rather than silently trained on.
:func:`sentfin_jsonl` is checked here against the canonical file (the tests rebuild it byte for byte from
``SEntFiN.csv``). The upstream inputs of :func:`finer_ord_conll` (FiNER-ORD's CSV) and :func:`stocknet_stream`
(StockNet's 29,250 raw tweet files) are not available offline, so those two are written from the documented
format and only the pins can confirm them on the first online run.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import logging
import re
import tarfile
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from monitor.core.errors import DataError

log = logging.getLogger(__name__)

# A '{...}' dict literal that ast cannot read (an unescaped apostrophe inside a key, "Osian's Art Fund"): the
# pairs are 'key': 'label' with the label one of three words, so a lazy key up to the closing quote is enough.
_PAIR_RE = re.compile(r"""['"](.+?)['"]\s*:\s*['"](positive|negative|neutral)['"]\s*(?=,|\})""")
FINER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")  # FiNER-ORD's gold_label 0..6
STOCKNET_HEADER = ("created_at_utc", "ticker", "tweet_id", "text", "lang", "source_file_date")


def sentfin_jsonl(data: bytes) -> bytes:
    """``SEntFiN.csv`` (``S No.,Title,Decisions,Words``) -> ``sentfin_entities.derived.jsonl``."""
    out = []
    for number, row in enumerate(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")), start=2):
        decisions = row.get("Decisions") or ""
        try:
            parsed = ast.literal_eval(decisions)
            pairs = [(str(k), str(v)) for k, v in parsed.items()]
        except (ValueError, SyntaxError, AttributeError):
            pairs = _PAIR_RE.findall(decisions)
        if not pairs:
            raise DataError(f"SEntFiN.csv:{number}: Decisions {decisions[:60]!r} is not an entity->sentiment dict")
        entities = [{"entity": entity, "sentiment": sentiment} for entity, sentiment in pairs]
        out.append(json.dumps({"s_no": int(row["S No."]), "title": row["Title"], "entities": entities,
                               "words": int(row["Words"])}))
    return ("\n".join(out) + "\n").encode("utf-8")


def finer_ord_conll(data: bytes) -> bytes:
    """FiNER-ORD ``train.csv``/``val.csv`` (``gold_label,gold_token,doc_idx,sent_idx``) -> ``token<TAB>tag``
    lines, one sentence per ``(doc_idx, sent_idx)`` in order of first appearance, a blank line after each."""
    sentences: dict[tuple[str, str], list[str]] = {}
    for number, row in enumerate(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")), start=2):
        token = (row.get("gold_token") or "").strip()
        if not token:
            continue
        try:
            tag = FINER_TAGS[int(float(row["gold_label"]))]
        except (KeyError, ValueError, IndexError):
            raise DataError(f"FiNER-ORD CSV:{number}: gold_label {row.get('gold_label')!r} is not 0..6") from None
        sentences.setdefault((row["doc_idx"], row["sent_idx"]), []).append(f"{token}\t{tag}")
    return "".join("\n".join(lines) + "\n\n" for lines in sentences.values()).encode("utf-8")


def stocknet_stream(archive: Path) -> bytes:
    """StockNet's repository archive (``.tar.gz``) -> ``stocknet_tweets_stream.csv``: ``created_at``, ``id_str``,
    ``text`` and ``lang`` of every raw tweet, with the ticker folder and the file date, newlines in the text
    replaced by spaces, sorted by (created_at, ticker, tweet id). A tweet filed under several tickers stays once
    per ticker."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    with tarfile.open(archive, mode="r|gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) < 4 or parts[-4:-2] != ("tweet", "raw"):
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            ticker, day = parts[-2], parts[-1]
            for line in handle.read().decode("utf-8").splitlines():
                if line.strip():
                    rows.append(_stocknet_row(json.loads(line), ticker, day))
    if not rows:
        raise DataError(f"{archive}: no tweet/raw/<TICKER>/<DATE> files; is this the stocknet-dataset archive?")
    rows.sort(key=lambda r: (r[0], r[1], int(r[2])))
    text = io.StringIO(newline="")
    writer = csv.writer(text)  # csv's default \r\n line ends, as the canonical file has
    writer.writerow(STOCKNET_HEADER)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def _stocknet_row(tweet: dict[str, object], ticker: str, day: str) -> tuple[str, str, str, str, str, str]:
    created = datetime.strptime(str(tweet["created_at"]), "%a %b %d %H:%M:%S %z %Y").astimezone(UTC)
    text = str(tweet.get("text") or "").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return (created.strftime("%Y-%m-%dT%H:%M:%SZ"), ticker, str(tweet["id_str"]), text, str(tweet.get("lang") or ""),
            day)


CONVERTERS = {"sentfin_jsonl": sentfin_jsonl, "finer_ord_conll": finer_ord_conll}  # bytes in, bytes out
