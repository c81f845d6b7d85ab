"""Risk signals: time-bucketed per-entity aggregates and the entity mentions behind them.

Entity keys are ``TYPE:name`` (``TICKER:AAPL``, ``ORG:apple inc``, ``PER:tim cook``, ``LOC:cupertino``) and the
reserved key ``*`` for the whole market. :func:`entity_key` and :func:`parse_entity_ref` are the one place that
spells them, shared by the signal writer, the alert rules and the dashboard.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from schemas.types import UTCDateTime, utcnow

MARKET_KEY = "*"
ENTITY_TYPES = ("TICKER", "ORG", "PER", "LOC")
ENTITY_KEY_MAX = 200
_POSSESSIVE_RE = re.compile(r"['’]s\b")
_NOT_NAME_RE = re.compile(r"[^\w&.\-]+")


def normalise_name(text: str) -> str:
    """``"Apple Inc.'s"`` -> ``"apple inc"``: NFKC, case-folded, possessive and punctuation dropped."""
    text = _POSSESSIVE_RE.sub("", unicodedata.normalize("NFKC", text).casefold())
    words = [word.strip(".-") for word in _NOT_NAME_RE.sub(" ", text).split()]
    return " ".join(word for word in words if word)


def entity_key(entity_type: str, text: str) -> str | None:
    """The signal key of one entity mention, or None when nothing is left after normalising."""
    kind = entity_type.strip().upper()
    if kind not in ENTITY_TYPES:
        kind = "ORG" if kind in ("COMPANY", "MISC") else kind
        if kind not in ENTITY_TYPES:
            return None
    name = text.strip().lstrip("$").upper() if kind == "TICKER" else normalise_name(text)
    if not name:
        return None
    return f"{kind}:{name}"[:ENTITY_KEY_MAX]


def parse_entity_ref(ref: str) -> str:
    """A user-typed entity (``*``, ``$aapl``, ``AAPL``, ``ticker:aapl``, ``ORG:Apple Inc.``) as a signal key.

    A bare word is a ticker; ``TYPE:*`` (every entity of a type) is kept as a pattern for alert rules.
    Raises ValueError with the accepted forms.
    """
    ref = ref.strip()
    if ref == MARKET_KEY:
        return MARKET_KEY
    kind, sep, name = ref.partition(":")
    if not sep:
        kind, name = "TICKER", ref
    kind = kind.strip().upper()
    if kind in ENTITY_TYPES and name.strip() == "*":
        return f"{kind}:*"
    key = entity_key(kind, name) if kind in ENTITY_TYPES else None
    if key is None:
        raise ValueError(
            f"expected '*', a ticker such as AAPL, or TYPE:name with TYPE one of {', '.join(ENTITY_TYPES)} "
            f"(found {ref[:60]!r})"
        )
    return key


def entity_matches(pattern: str, key: str) -> bool:
    """Whether a rule's entity (a key or ``TYPE:*``) covers signal key ``key``."""
    if pattern.endswith(":*"):
        return key.startswith(pattern[:-1])
    return pattern == key


class EntitySignal(SQLModel, table=True):
    """One entity's signals in one time bucket. Sums are stored so batches add to them atomically.

    ``count`` counts distinct stories (near-duplicates go to ``duplicates`` only). The derived columns
    (mean, share, z-score, volume ratio, EWMA) are recomputed for every bucket a batch touches.
    """

    __tablename__ = "entity_signal"
    __table_args__ = (Index("ix_entity_signal_bucket", "bucket_s", "bucket_start"),)

    entity: str = Field(primary_key=True, max_length=ENTITY_KEY_MAX, description="TYPE:name or '*'.")
    bucket_s: int = Field(primary_key=True, description="Bucket width in seconds.")
    bucket_start: datetime = Field(primary_key=True, sa_type=UTCDateTime, description="Bucket start (UTC).")
    count: int = Field(default=0, description="Distinct stories in the bucket.")
    duplicates: int = Field(default=0, description="Near-duplicate stories seen (not counted).")
    negative_count: int = Field(default=0, description="Stories whose sentiment is negative.")
    weight_sum: float = Field(default=0.0, description="Sum of confidences.")
    weighted_score_sum: float = Field(default=0.0, description="Sum of confidence * score.")
    weighted_score_sq_sum: float = Field(default=0.0, description="Sum of confidence * score^2 (per-story spread).")
    mean_sentiment: float | None = Field(default=None, description="Confidence-weighted mean score.")
    negative_share: float | None = Field(default=None, description="negative_count / count.")
    zscore: float | None = Field(default=None, description="Mean score vs the baseline's bucket means, in stds.")
    volume_ratio: float | None = Field(default=None, description="count / baseline mean count per bucket.")
    ewma_score: float | None = Field(default=None, description="Exponentially weighted mean over buckets.")
    baseline_count: int | None = Field(default=None, description="Stories in the trailing baseline.")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class NewsEntity(SQLModel, table=True):
    """Which distinct (non-duplicate) stories mention which entity: the evidence behind a signal."""

    __tablename__ = "news_entity"
    __table_args__ = (Index("ix_news_entity_entity_published", "entity", "published_at"),)

    news_id: str = Field(primary_key=True, max_length=200)
    entity: str = Field(primary_key=True, max_length=ENTITY_KEY_MAX)
    published_at: datetime = Field(sa_type=UTCDateTime)
    score: float
    confidence: float
    negative: bool
