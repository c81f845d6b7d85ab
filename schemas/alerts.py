"""Alert rules, their per-entity state, fired alerts, silences and the notification outbox.

:class:`AlertRuleIn` is the one validation of a rule, shared by ``finpulse alerts`` and the dashboard's rule
editor; :func:`describe_rule_error` turns its errors into one line that names the field.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError, field_validator, model_validator
from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field, SQLModel

from schemas.signals import ENTITY_KEY_MAX, parse_entity_ref
from schemas.types import UTCDateTime, utcnow

Metric = Literal["volume_surprise", "sentiment_z", "sentiment_shrunk", "mean_sentiment", "negative_share", "count",
                 "zscore", "volume_ratio", "ewma_score"]
Comparator = Literal["<", "<=", ">", ">="]
Severity = Literal["info", "warning", "critical"]
# The first three judge a window against the entity's own history with its sample size in mind (README,
# "Alert statistics"); the last three are per-bucket values kept for rules written before them.
METRICS: tuple[str, ...] = ("volume_surprise", "sentiment_z", "sentiment_shrunk", "mean_sentiment", "negative_share",
                            "count", "zscore", "volume_ratio", "ewma_score")
LEGACY_METRICS = ("zscore", "volume_ratio", "ewma_score")
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "volume_surprise": (0.0, math.inf),
    "sentiment_z": (-math.inf, math.inf),
    "sentiment_shrunk": (-1.0, 1.0),
    "mean_sentiment": (-1.0, 1.0),
    "ewma_score": (-1.0, 1.0),
    "negative_share": (0.0, 1.0),
    "count": (0.0, math.inf),
    "volume_ratio": (0.0, math.inf),
    "zscore": (-math.inf, math.inf),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
CHANNEL_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,49}$")
MAX_WINDOW_S = 30 * 86_400
COMPARATOR_WORDS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}


class AlertRuleIn(SQLModel):
    """A rule as a user writes it. Fires when ``metric comparator threshold`` holds for ``pending_s`` seconds."""

    name: str = Field(description="Unique rule name: letters, digits, '_', '.', '-'.")
    entity: str = Field(description="'*' (whole market), a ticker (AAPL), TYPE:name (ORG:apple inc) or TYPE:*.")
    metric: Metric = Field(description="Signal to compare.")
    comparator: Comparator
    threshold: float
    recovery_threshold: float | None = Field(
        default=None, description="Resolve only once the metric is back past this (hysteresis); default threshold."
    )
    window_s: int = Field(default=900, ge=10, le=MAX_WINDOW_S, description="Seconds of buckets evaluated.")
    pending_s: int = Field(default=0, ge=0, le=MAX_WINDOW_S, description="Seconds the condition must hold.")
    repeat_interval_s: int = Field(
        default=14_400, ge=0, le=MAX_WINDOW_S, description="Reminder interval while firing; 0 = never."
    )
    min_stories: int = Field(
        default=3, ge=1, le=100_000, description="Stories the window needs before the rule may fire (or stay firing)."
    )
    no_data_windows: int = Field(
        default=2, ge=0, le=1000, description="Windows without enough stories before a firing alert resolves."
    )
    severity: Severity = "warning"
    channels: list[str] = Field(default_factory=list, max_length=20, description="Notification channel names.")
    enabled: bool = True
    description: str | None = Field(default=None, max_length=500)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("expected 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value

    @field_validator("comparator", mode="before")
    @classmethod
    def _comparator_words(cls, value: Any) -> Any:
        # Shell-friendly spellings: `--op lt` instead of quoting '<'.
        return COMPARATOR_WORDS.get(value, value) if isinstance(value, str) else value

    @field_validator("entity")
    @classmethod
    def _entity(cls, value: str) -> str:
        return parse_entity_ref(value)

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in re.split(r"[,\s]+", value) if part]
        if not isinstance(value, list):
            return value
        out: list[str] = []
        for item in value:
            name = str(item).strip().lower()
            if not CHANNEL_RE.match(name):
                raise ValueError(f"channel {item!r} is not a name like 'ops' or 'slack-risk'")
            if name not in out:
                out.append(name)
        return out

    @field_validator("threshold", "recovery_threshold")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertRuleIn:
        low, high = METRIC_RANGES[self.metric]
        for field, value in (("threshold", self.threshold), ("recovery_threshold", self.recovery_threshold)):
            if value is not None and not low <= value <= high:
                raise ValueError(f"{field}: {self.metric} lies in [{low:g}, {high:g}], found {value:g}")
        recovery = self.recovery_threshold
        if recovery is not None:
            below = self.comparator in ("<", "<=")
            if (below and recovery < self.threshold) or (not below and recovery > self.threshold):
                side = "at or above" if below else "at or below"
                raise ValueError(
                    f"recovery_threshold: must be {side} threshold {self.threshold:g} for comparator "
                    f"'{self.comparator}' (found {recovery:g})"
                )
        return self


def describe_rule_error(error: ValidationError) -> str:
    """One line naming the field, what was expected and what was found."""
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc and ":" in message:  # model-level checks name their field first
        loc, message = (part.strip() for part in message.split(":", 1))
    found = first.get("input")
    found_text = "" if not loc or isinstance(found, dict) or "found" in message else f" (found {str(found)[:60]!r})"
    return f"invalid alert rule: {loc or 'rule'}: {message}{found_text}"


class AlertRule(SQLModel, table=True):
    """A stored rule (validated by :class:`AlertRuleIn` before it gets here)."""

    __tablename__ = "alert_rule"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True, index=True)
    entity: str = Field(max_length=ENTITY_KEY_MAX, index=True)
    metric: str = Field(max_length=32)
    comparator: str = Field(max_length=2)
    threshold: float
    recovery_threshold: float | None = None
    window_s: int
    pending_s: int
    repeat_interval_s: int
    min_stories: int = 3
    no_data_windows: int = 2
    severity: str = Field(max_length=16)
    channels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    description: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AlertState(SQLModel, table=True):
    """The state machine's memory for one rule and entity. ``version`` guards concurrent evaluators."""

    __tablename__ = "alert_state"

    rule_id: int = Field(primary_key=True)
    entity: str = Field(primary_key=True, max_length=ENTITY_KEY_MAX)
    state: str = Field(default="normal", max_length=16, index=True, description="normal|pending|firing|resolved")
    since: datetime | None = Field(default=None, sa_type=UTCDateTime, description="When the state was entered.")
    last_notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_value: float | None = None
    last_evaluated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    alert_id: int | None = Field(default=None, description="The open alert while pending/firing.")
    no_data_since: datetime | None = Field(default=None, sa_type=UTCDateTime,
                                           description="Event time since which a firing window lacks stories.")
    version: int = 0


class AlertClock(SQLModel, table=True):
    """How far in event time the rules have been evaluated, and by whom: one row, taken over by the next
    evaluator when the holder of the alert-evaluator lock dies."""

    __tablename__ = "alert_clock"

    name: str = Field(default="default", primary_key=True, max_length=50)
    evaluated_through: datetime | None = Field(default=None, sa_type=UTCDateTime,
                                               description="Newest evaluation step (event time).")
    member: str | None = Field(default=None, max_length=200, description="host:pid of the last evaluator.")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Alert(SQLModel, table=True):
    """One firing episode of a rule for an entity, with the evidence that made it fire."""

    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_by_rule_entity", "rule_id", "entity"),)

    id: int | None = Field(default=None, primary_key=True)
    rule_id: int
    rule_name: str = Field(max_length=100)
    entity: str = Field(max_length=ENTITY_KEY_MAX)
    metric: str = Field(max_length=32)
    severity: str = Field(max_length=16)
    status: str = Field(default="firing", max_length=16, index=True, description="firing|resolved")
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    value: float | None = Field(default=None, description="Metric value when it fired.")
    resolved_value: float | None = None
    threshold: float
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    acked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acked_by: str | None = Field(default=None, max_length=200)


class AlertSilence(SQLModel, table=True):
    """Mutes notifications for a rule, an entity, or both, until a time. Alerts are still recorded."""

    __tablename__ = "alert_silence"

    id: int | None = Field(default=None, primary_key=True)
    rule_id: int | None = Field(default=None, index=True)
    entity: str | None = Field(default=None, max_length=ENTITY_KEY_MAX)
    until: datetime = Field(sa_type=UTCDateTime, index=True)
    reason: str | None = Field(default=None, max_length=500)
    created_by: str = Field(default="cli", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Notification(SQLModel, table=True):
    """The outbox: one message for one channel, written with the alert state and drained by the notifier.

    Only the channel *name* is stored; its Apprise URL (which may hold a token) is resolved from the
    environment or the secrets file at send time.
    """

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(index=True)
    channel: str = Field(max_length=50)
    kind: str = Field(max_length=16, description="firing|resolved|reminder")
    title: str = Field(max_length=500)
    body: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="pending", max_length=16, description="pending|sending|sent|failed")
    attempts: int = 0
    lease_token: str | None = Field(default=None, max_length=36,
                                    description="Fencing token of the sender holding the lease.")
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
