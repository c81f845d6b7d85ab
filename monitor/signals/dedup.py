"""Near-duplicate stories: the same headline from several feeds, retweets, different casing, punctuation or links.

Each story gets ``content_hash`` = SHA-256 of its normalised headline. A story whose hash matches an earlier
*original* published within ``dedup_window_s`` of it is a duplicate: ``duplicate_of`` links it to that original
and it adds to no signal volume. The lookup uses the ``content_hash`` index, so it reads a handful of rows, never a
scan. Exact hashing of normalised text is deliberate: it is cheap, identical on every consumer, and needs no shared
in-memory index (a MinHash LSH index would live in one process and miss duplicates seen by another consumer).
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from schemas.news import News

log = logging.getLogger(__name__)

_RETWEET_RE = re.compile(r"^\s*(?:rt\s+)?@\w+\s*:\s*|^\s*rt\s+", re.IGNORECASE)
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"[@#](?=\w)")
_NOT_WORD_RE = re.compile(r"[^\w$%]+")
_LOOKUP_CHUNK = 500


def normalise_text(text: str) -> str:
    """``"RT @wire: Apple PLUNGES 5%!! https://t.co/x"`` -> ``"apple plunges 5%"``."""
    text = unicodedata.normalize("NFKC", text)
    previous = None
    while previous != text:  # "RT @a: RT @b: ..." nests
        previous, text = text, _RETWEET_RE.sub("", text, count=1)
    text = _URL_RE.sub(" ", text.casefold())
    text = _MENTION_RE.sub("", text)
    return " ".join(_NOT_WORD_RE.sub(" ", text).split())


def content_hash(headline: str) -> str:
    normalised = normalise_text(headline) or headline.strip().casefold()
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def _within(a: datetime, b: datetime, window: timedelta) -> bool:
    return abs(a - b) <= window


def mark_duplicates(session: Session, rows: Sequence[News], window_s: int) -> dict[str, str]:
    """Set ``content_hash`` on every row and ``duplicate_of`` on duplicates, in the caller's transaction.

    Returns {duplicate id: original id}. Within the batch, rows are taken in publish order so the earliest
    story is the original. One SELECT (per 500 distinct hashes) finds earlier originals; one executemany
    UPDATE writes the hashes and links back.
    """
    if not rows:
        return {}
    window = timedelta(seconds=window_s)
    hashes = {row.id: content_hash(row.headline) for row in rows}
    # Earlier originals with the same hash; a story is compared with originals only, so chains never form.
    known: dict[str, list[tuple[datetime, str]]] = {}
    if window_s > 0:
        batch_ids = [row.id for row in rows]
        earliest = min(row.published_at for row in rows) - window
        latest = max(row.published_at for row in rows) + window
        distinct = sorted(set(hashes.values()))
        for start in range(0, len(distinct), _LOOKUP_CHUNK):
            chunk = distinct[start:start + _LOOKUP_CHUNK]
            found = session.execute(
                select(col(News.content_hash), col(News.published_at), col(News.id))
                .where(col(News.content_hash).in_(chunk), col(News.duplicate_of).is_(None))
                .where(col(News.published_at).between(earliest, latest), col(News.id).not_in(batch_ids))
            ).all()
            for digest, published_at, news_id in found:
                known.setdefault(digest, []).append((published_at, news_id))
    links: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: (r.published_at, r.id)):
        digest = hashes[row.id]
        # set_committed_value: the executemany UPDATE below writes the columns; an ORM-dirty attribute would
        # add one UPDATE per row at the next flush.
        set_committed_value(row, "content_hash", digest)
        candidates = [c for c in known.get(digest, ()) if window_s > 0 and _within(c[0], row.published_at, window)]
        if candidates:
            links[row.id] = min(candidates)[1]
            set_committed_value(row, "duplicate_of", links[row.id])
        else:
            set_committed_value(row, "duplicate_of", None)
            known.setdefault(digest, []).append((row.published_at, row.id))
    table = News.__table__  # type: ignore[attr-defined]
    session.execute(
        update(table).where(table.c.id == bindparam("b_id"))
        .values(content_hash=bindparam("b_hash"), duplicate_of=bindparam("b_dup")),
        [{"b_id": row.id, "b_hash": row.content_hash, "b_dup": row.duplicate_of} for row in rows],
    )
    if links:
        log.debug("%d of %d stories are near-duplicates", len(links), len(rows))
    return links
