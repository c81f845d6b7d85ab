"""Accounts, login throttling and the audit trail: who may change what the system believes, and who did.

Roles: ``viewer`` reads; ``analyst`` also labels, acknowledges and silences; ``admin`` also edits rules, promotes,
rolls back and approves models, and manages accounts (:mod:`monitor.core.accounts` holds the permission table).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from schemas.types import UTCDateTime, utcnow

ROLES = ("viewer", "analyst", "admin")


class Account(SQLModel, table=True):
    __tablename__ = "account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True, index=True, description="Login name, case-sensitive.")
    role: str = Field(max_length=16, description="viewer | analyst | admin")
    password_hash: str = Field(max_length=200, description="bcrypt hash; never the password.")
    disabled: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    password_changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class LoginThrottle(SQLModel, table=True):
    """Failed logins per ``account:<name>`` and per ``client:<address>``; survives new browser sessions."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=300)
    failures: int = Field(default=0, description="Consecutive failures since the last success.")
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_failure_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """One change, append-only (database triggers refuse UPDATE and DELETE): who, when, what, before and after."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=200, index=True, description="Account name, OS user or --actor.")
    role: str | None = Field(default=None, max_length=16, description="The actor's role at the time.")
    source: str = Field(max_length=16, description="dashboard | cli | scheduler")
    action: str = Field(max_length=64, index=True, description="e.g. rule.update, model.promote, label.create")
    target: str = Field(max_length=300, description="What was changed, e.g. 'rule 3' or 'model v7'.")
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
