"""Model registry and labelled news: what training writes and retraining reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from schemas.types import UTCDateTime, utcnow

MODEL_STATUSES = ("candidate", "champion", "retired")


class ModelVersion(SQLModel, table=True):
    """One trained model directory. Exactly one row has status 'champion' at a time."""

    __tablename__ = "model_version"

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=100, unique=True, index=True)
    path: str = Field(max_length=1000)
    base_model: str = Field(max_length=500)
    status: str = Field(default="candidate", max_length=16, index=True, description="candidate|champion|retired")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    promoted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    parent_version: str | None = Field(default=None, max_length=100)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    train_args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    gate: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    trained_until_label_id: int | None = Field(default=None, description="Newest labelled_news.id it trained on.")
    notes: str | None = Field(default=None, max_length=2000)
    refused_at: datetime | None = Field(default=None, sa_type=UTCDateTime,
                                        description="When a consumer or promotion found it unservable.")
    refused_reason: str | None = Field(default=None, max_length=1000)
    awaiting_approval: bool = Field(default=False, description="Passed the gate; waits for an admin (approve mode).")
    approved_by: str | None = Field(default=None, max_length=100)
    approved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LabelledNews(SQLModel, table=True):
    """An analyst's label. ``entities`` holds [{start, end, type, text, sentiment}] character spans."""

    __tablename__ = "labelled_news"

    id: int | None = Field(default=None, primary_key=True)
    news_id: str | None = Field(default=None, max_length=200, index=True)
    text: str = Field(max_length=25_000)
    sentiment: str | None = Field(default=None, max_length=16)
    entities: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    labelled_by: str = Field(default="analyst", max_length=200)
    labeller_role: str | None = Field(default=None, max_length=16, description=(
        "The account's role when it labelled; NULL for labels from before accounts existed."))
    labelled_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    split: str | None = Field(default=None, max_length=16, description="gold | train; set by retraining")
