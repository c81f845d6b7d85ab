"""Near-duplicate stories: the same headline from several feeds, retweets, different casing, punctuation or links.

Each story gets ``content_hash`` = SHA-256 of its normalised headline. Among the stories of one hash, taken in
``(published_at, id)`` order, a story is a duplicate when an *original* precedes it by at most ``dedup_window_s``:
``duplicate_of`` links it to the earliest such original and it adds to no signal volume; otherwise it is an
original. The roles depend only on which stories are stored, not on the order they arrived in: a story that
arrives after a later copy of itself takes the original's role, and the stored stories it demotes (and any that a
demotion promotes in turn) come back as :class:`Flip` for the signal writer to move between the sums.

The lookup uses the ``content_hash`` index and reads only the hash's originals from ``dedup_window_s`` before the
batch and its stories from the batch's earliest time on (in an in-order stream: a handful), never a scan. Exact
hashing of normalised text is deliberate: it is cheap, identical on every consumer, and needs no shared in-memory
index (a MinHash LSH index would live in one process and miss duplicates seen by another consumer).

Limitation: two consumers that commit copies of one headline at the same moment do not see each other's
uncommitted rows, so both copies may stay originals; exact roles need one writer per hash at a time.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from monitor.signals.math import Observation, observations
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


@dataclass(frozen=True, slots=True)
class Flip:
    """A stored story whose role changed: it stops (``to_duplicate``) or starts being counted."""

    news_id: str
    published_at: datetime
    to_duplicate: bool
    observations: list[Observation]


@dataclass(frozen=True, slots=True)
class Dedup:
    links: dict[str, str]  # {duplicate id: original id} for the batch's rows
    flips: list[Flip]


@dataclass(frozen=True, slots=True)
class _Story:
    published_at: datetime
    id: str
    stored_link: str | None  # duplicate_of as stored; None for a batch row too
    in_batch: bool


def _stored(session: Session, hashes: list[str], batch_ids: list[str], earliest: datetime,
            window: timedelta) -> dict[str, list[_Story]]:
    """Per hash: the originals that may precede a batch story, and every story that may change role (those
    published from the batch's earliest time on; a story's role depends only on the stories before it)."""
    found: dict[str, list[_Story]] = defaultdict(list)
    for start in range(0, len(hashes), _LOOKUP_CHUNK):
        chunk = hashes[start:start + _LOOKUP_CHUNK]
        for digest, published_at, news_id, link in session.execute(
            select(col(News.content_hash), col(News.published_at), col(News.id), col(News.duplicate_of))
            .where(col(News.content_hash).in_(chunk), col(News.id).not_in(batch_ids))
            .where(col(News.published_at) >= earliest - window)
            .where(or_(col(News.duplicate_of).is_(None), col(News.published_at) >= earliest))
        ).all():
            found[digest].append(_Story(published_at, news_id, link, False))
    return found


def _roles(stories: list[_Story], earliest: datetime, window: timedelta) -> dict[str, str | None]:
    """{id: original id or None} for the stories from ``earliest`` on, in (published_at, id) order."""
    originals: list[_Story] = []
    roles: dict[str, str | None] = {}
    for story in sorted(stories, key=lambda s: (s.published_at, s.id)):
        if story.published_at < earliest:  # loaded as an original, and nothing before it changed
            originals.append(story)
            continue
        # The earliest original within the window: the same one whichever copies arrived first.
        first = next((o for o in originals if story.published_at - o.published_at <= window), None)
        roles[story.id] = None if first is None else first.id
        if first is None:
            originals.append(story)
    return roles


def _flips(session: Session, changed: dict[str, tuple[datetime, bool]]) -> list[Flip]:
    """Each flipped stored story with its observations, read back from its row (one query)."""
    ids = sorted(changed)
    out = []
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        rows = session.execute(
            select(col(News.id), col(News.tickers), col(News.entities), col(News.score), col(News.confidence),
                   col(News.sentiment)).where(col(News.id).in_(ids[start:start + _LOOKUP_CHUNK]))
        ).all()
        for news_id, tickers, entities, score, confidence, sentiment in rows:
            published_at, to_duplicate = changed[news_id]
            out.append(Flip(news_id, published_at, to_duplicate,
                            observations(tickers or [], entities or [], score, confidence, sentiment)))
    return out


def mark_duplicates(session: Session, rows: Sequence[News], window_s: int) -> Dedup:
    """Set ``content_hash`` on every row and ``duplicate_of`` on duplicates, in the caller's transaction; re-link
    the stored stories whose role the batch changes. One SELECT (per 500 distinct hashes) finds the stored
    stories; one executemany UPDATE writes the hashes and links back."""
    if not rows:
        return Dedup({}, [])
    window = timedelta(seconds=window_s)
    hashes = {row.id: content_hash(row.headline) for row in rows}
    earliest = min(row.published_at for row in rows)
    by_hash: dict[str, list[_Story]] = defaultdict(list)
    if window_s > 0:
        by_hash = _stored(session, sorted(set(hashes.values())), [row.id for row in rows], earliest, window)
    for row in rows:
        by_hash[hashes[row.id]].append(_Story(row.published_at, row.id, None, True))
    roles: dict[str, str | None] = {}
    for stories in by_hash.values():
        roles.update(_roles(stories, earliest, window) if window_s > 0 else {s.id: None for s in stories})
    links: dict[str, str] = {}
    for row in rows:
        # set_committed_value: the executemany UPDATE below writes the columns; an ORM-dirty attribute would
        # add one UPDATE per row at the next flush.
        set_committed_value(row, "content_hash", hashes[row.id])
        set_committed_value(row, "duplicate_of", roles[row.id])
        if roles[row.id] is not None:
            links[row.id] = str(roles[row.id])
    updates = [{"b_id": row.id, "b_hash": row.content_hash, "b_dup": row.duplicate_of} for row in rows]
    changed: dict[str, tuple[datetime, bool]] = {}
    for digest, stories in by_hash.items():
        for story in stories:
            if story.in_batch or story.id not in roles or roles[story.id] == story.stored_link:
                continue
            updates.append({"b_id": story.id, "b_hash": digest, "b_dup": roles[story.id]})
            if (roles[story.id] is None) != (story.stored_link is None):
                changed[story.id] = (story.published_at, roles[story.id] is not None)
    table = News.__table__  # type: ignore[attr-defined]
    session.execute(
        update(table).where(table.c.id == bindparam("b_id"))
        .values(content_hash=bindparam("b_hash"), duplicate_of=bindparam("b_dup")),
        sorted(updates, key=lambda u: u["b_id"]),  # row locks in one order on every writer
    )
    if links or changed:
        log.debug("%d of %d stories are near-duplicates; %d stored stories changed role",
                  len(links), len(rows), len(changed))
    return Dedup(links, _flips(session, changed))
