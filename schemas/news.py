"""News: the Kafka message contract and the scored-news table.

Model family as in full-stack-fastapi-template: ``NewsBase -> NewsIn -> News(table=True) -> NewsOut``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, ConfigDict, field_validator
from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from schemas.types import UTCDateTime, utcnow

TICKER_RE = re.compile(r"^[A-Z][A-Z0-9]{0,9}([.\-][A-Z0-9]{1,4})?$")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
HEADLINE_MAX = 1000
BODY_STORE_MAX = 20_000
# Publish times outside this range are producer bugs (0001-01-01, 9999-12-31), and they overflow the window
# arithmetic of de-duplication and signals; they are refused at the door rather than failing the database write.
PUBLISHED_MIN = datetime(1900, 1, 1, tzinfo=UTC)
PUBLISHED_MAX = datetime(2200, 1, 1, tzinfo=UTC)
_TEXT_FIELDS = ("id", "source", "headline", "body", "url", "language")


def unstorable(text: str) -> str | None:
    """Why a database cannot store ``text`` (PostgreSQL text refuses NUL; UTF-8 has no lone surrogates), or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which PostgreSQL text cannot store; remove it at the producer"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (f"contains a lone UTF-16 surrogate at character {error.start}, which is not valid UTF-8; "
                "send the character as a proper surrogate pair or drop it")
    return None


class NewsBase(SQLModel):
    """Fields every news item has, in the message and in the table."""

    id: str = Field(min_length=1, max_length=200, primary_key=True, description="Producer's unique id.")
    source: str = Field(min_length=1, max_length=200, description="Feed or publisher.")
    published_at: datetime = Field(sa_type=UTCDateTime, index=True, description="Timezone-aware publish time.")
    headline: str = Field(min_length=1, max_length=HEADLINE_MAX)
    body: str | None = Field(default=None, max_length=BODY_STORE_MAX)
    url: str | None = Field(default=None, max_length=2000)
    language: str | None = Field(default=None, max_length=16)


class NewsIn(NewsBase):
    """The contract of an incoming Kafka message. Unknown keys are rejected so producer bugs surface."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[assignment]

    published_at: AwareDatetime
    tickers: list[str] = Field(default_factory=list, max_length=50)

    @field_validator(*_TEXT_FIELDS)
    @classmethod
    def _storable_text(cls, value: str | None) -> str | None:
        if value is not None and (problem := unstorable(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("published_at")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        try:
            in_range = PUBLISHED_MIN <= value <= PUBLISHED_MAX
        except OverflowError:  # 0001-01-01T00:00+14:00 cannot even be converted to UTC
            in_range = False
        if not in_range:
            raise ValueError(f"published_at {value.isoformat()} is outside {PUBLISHED_MIN:%Y}-{PUBLISHED_MAX:%Y}; "
                             "send the story's real publish time")
        return value

    @field_validator("tickers", mode="before")
    @classmethod
    def _normalise_tickers(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            value = [part for part in re.split(r"[,\s]+", value) if part]
        if not isinstance(value, list):
            return value
        out: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"ticker {item!r} is not a string")
            symbol = item.strip().lstrip("$").upper()
            if not TICKER_RE.match(symbol):
                raise ValueError(f"ticker {item!r} is not a symbol like AAPL, BRK.B or $TSLA")
            if symbol not in out:
                out.append(symbol)
        return out

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value

    @field_validator("language")
    @classmethod
    def _language_code(cls, value: str | None) -> str | None:
        if value is not None and not LANGUAGE_RE.match(value):
            raise ValueError("language must be an ISO 639 code such as 'en' or 'en-US'")
        return value

    def model_text(self, body_max_chars: int) -> str:
        """The text the model reads: headline, then the body truncated to ``body_max_chars``."""
        if not self.body or body_max_chars <= 0:
            return self.headline
        return f"{self.headline}. {self.body[:body_max_chars]}"


class News(NewsBase, table=True):
    """A scored news item with its Kafka coordinates. One row per news id (idempotent upsert)."""

    __tablename__ = "news"
    __table_args__ = (
        # Not unique: the news id is the idempotency key. Coordinates repeat when a topic is recreated (the
        # embedded broker keeps topics in memory only), and new stories at old offsets are new stories.
        Index("ix_news_kafka_coordinates", "kafka_topic", "kafka_partition", "kafka_offset"),
        Index("ix_news_scored_at", "scored_at"),
        Index("ix_news_confidence", "confidence"),
    )

    tickers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    kafka_topic: str = Field(max_length=255)
    kafka_partition: int
    kafka_offset: int = Field(sa_type=BigInteger)
    sentiment: str = Field(max_length=16, description="negative | neutral | positive")
    p_negative: float
    p_neutral: float
    p_positive: float
    score: float = Field(description="P(positive) - P(negative), in [-1, 1].")
    confidence: float = Field(description="Probability of the predicted label.")
    entities: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="[{text, type, start, end, sentiment, score, confidence}]",
    )
    model_version: str = Field(max_length=100, index=True)
    content_hash: str | None = Field(default=None, max_length=64, index=True, description="Normalised-text hash.")
    duplicate_of: str | None = Field(default=None, max_length=200, index=True, description="First story's id.")
    ingested_at: datetime = Field(sa_type=UTCDateTime, description="Kafka message timestamp.")
    scored_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class NewsOut(NewsBase):
    """What readers (dashboard, API) get back."""

    tickers: list[str]
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int = Field(sa_type=BigInteger)
    sentiment: str
    p_negative: float
    p_neutral: float
    p_positive: float
    score: float
    confidence: float
    entities: list[dict[str, Any]]
    model_version: str
    duplicate_of: str | None
    ingested_at: datetime
    scored_at: datetime
