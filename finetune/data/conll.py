"""CoNLL NER files (CoNLL-2003 columns, BIO or IO tags) -> examples with character spans.

The tag is the last column and the token the first; other columns (POS, chunk) are ignored. IO files such as SEC NER
(only ``I-X`` tags) are converted to BIO: an ``I-X`` that follows ``O`` or another type starts an entity. Under IO,
adjacent entities of the same type cannot be told apart and merge, a limitation of the source. Types map onto
ORG/PER/LOC (``PERSON``, ``LOCATION``, ``GPE`` ... are aliases); **MISC and other types are dropped** (tagged O),
because the model's NER head knows only ORG, PER and LOC.

Two repairs for public news data (FiNER-ORD): zero-width characters (U+200B ...) are removed from tokens and a
token left empty is dropped, since no tokenizer gives it a piece the model could tag; and in a BIO file, a sentence
that opens with ``I-X`` right after a sentence ending inside an ``X`` entity is joined to it: the blank line was a
false sentence break inside a name ("Shinzo | Abe", "Yahoo ! | Finance"), and splitting there would count one
entity as two.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from finetune.examples import NER_TYPE_ALIASES, Example, Span
from monitor.core.errors import DataError

log = logging.getLogger(__name__)

_TAG_RE = re.compile(r"^(?:O|[BIES]-[A-Za-z_]+)$")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))  # zero-width: no tokenizer piece


def read_conll(path: Path, max_words: int = 40) -> list[Example]:
    """Sentences of ``path``; sentences longer than ``max_words`` are cut into chunks (never inside an entity),
    so that truncation to the model's max length does not silently drop their entities."""
    sentences, starts = _sentences(path)
    dropped: Counter[str] = Counter()
    out = []
    for sentence, first_line in zip(sentences, starts, strict=True):
        tags = to_bio([tag for _, tag in sentence])
        for chunk_start, chunk_end in _chunks(tags, max_words):
            words = [word for word, _ in sentence[chunk_start:chunk_end]]
            chunk_tags = to_bio(tags[chunk_start:chunk_end])  # a chunk may start inside an over-long entity
            out.append(_example(words, chunk_tags, f"{path}:{first_line + chunk_start}", dropped))
    if dropped:
        log.info("%s: dropped entity types %s (the NER head knows ORG, PER, LOC)", path, dict(dropped))
    return out


def _sentences(path: Path) -> tuple[list[list[tuple[str, str]]], list[int]]:
    """(token, tag) sentences and the line each starts on, after the two repairs of the module docstring."""
    sentences: list[list[tuple[str, str]]] = []
    starts: list[int] = []
    joinable: list[bool] = []  # False for the first sentence of a document: never joined across -DOCSTART-
    current: list[tuple[str, str]] = []
    after_docstart, pending_begin, bio = True, "", False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 ({error.reason} at byte {error.start}); re-encode the file") from None
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if current:
                sentences.append(current)
                current = []
            after_docstart = after_docstart or bool(parts)
            continue
        if len(parts) < 2 or not _TAG_RE.match(parts[-1]):
            raise DataError(f"{path}:{number}: expected 'TOKEN [POS CHUNK] TAG' with a BIO/IO tag (O, B-ORG, I-PER "
                            f"...) in the last column, found {line.strip()[:80]!r}")
        token, tag = parts[0].translate(_INVISIBLE), parts[-1]
        bio = bio or tag.startswith("B-")
        if not token:  # an invisible token: its B- passes to the next token of the entity
            pending_begin = tag if tag.startswith("B-") else ""
            continue
        if pending_begin and tag == f"I-{pending_begin[2:]}":
            tag = pending_begin
        pending_begin = ""
        if not current:
            starts.append(number)
            joinable.append(not after_docstart)
            after_docstart = False
        current.append((token, tag))
    if current:
        sentences.append(current)
    if not sentences:
        raise DataError(f"{path}:1: empty file; expected CoNLL token lines with a tag in the last column")
    return _join_false_breaks(sentences, starts, joinable) if bio else (sentences, starts)


def _join_false_breaks(sentences: list[list[tuple[str, str]]], starts: list[int],
                       joinable: list[bool]) -> tuple[list[list[tuple[str, str]]], list[int]]:
    out: list[list[tuple[str, str]]] = []
    out_starts: list[int] = []
    for sentence, start, can_join in zip(sentences, starts, joinable, strict=True):
        first = sentence[0][1]
        if can_join and out and first.startswith("I-") and out[-1][-1][1][2:] == first[2:]:
            out[-1].extend(sentence)
            continue
        out.append(list(sentence))
        out_starts.append(start)
    return out, out_starts


def to_bio(tags: list[str]) -> list[str]:
    """IO/BIO/IOBES tags -> BIO (IOB2)."""
    out: list[str] = []
    previous = "O"
    for tag in tags:
        if tag == "O":
            out.append("O")
        else:
            prefix, kind = tag.split("-", 1)
            continues = prefix in ("I", "E") and previous != "O" and previous[2:] == kind
            out.append(f"{'I' if continues else 'B'}-{kind}")
        previous = out[-1]
    return out


def _chunks(tags: list[str], max_words: int) -> list[tuple[int, int]]:
    out, start = [], 0
    while len(tags) - start > max_words:
        cut = start + max_words
        while cut > start + 1 and tags[cut].startswith("I-"):  # never split an entity...
            cut -= 1
        if cut == start + 1 and tags[cut].startswith("I-"):  # ...unless it is longer than a chunk
            cut = start + max_words
        out.append((start, cut))
        start = cut
    out.append((start, len(tags)))
    return out


def _example(words: list[str], tags: list[str], where: str, dropped: Counter[str]) -> Example:
    text_parts, spans = [], []
    position = 0
    open_span: tuple[int, str] | None = None
    end_of_previous = 0
    for word, tag in zip(words, tags, strict=True):
        start = position
        text_parts.append(word)
        position += len(word) + 1
        if open_span is not None and not tag.startswith("I-"):
            spans.append((open_span[0], end_of_previous, open_span[1]))
            open_span = None
        if tag.startswith("B-"):
            open_span = (start, tag[2:])
        end_of_previous = start + len(word)
    if open_span is not None:
        spans.append((open_span[0], end_of_previous, open_span[1]))
    kept = []
    for start, end, kind in spans:
        canonical = NER_TYPE_ALIASES.get(kind.upper())
        if canonical is None:
            dropped[kind] += 1
            continue
        kept.append(Span(start, end, canonical))
    return Example(text=" ".join(text_parts), spans=kept, ner=True, source="conll", where=where)
