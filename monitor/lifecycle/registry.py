"""The model registry: versions in the ``model_version`` table, exactly one of them champion.

Policy: a newly trained version is a *candidate*, unless ``promote=True`` or there is no champion yet (the first
model must serve something), in which case it becomes *champion*. Promoting retires the previous champion.
``rollback()`` retires the champion and re-promotes the version that was champion before it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.core import db
from monitor.core.errors import ConfigError
from schemas.registry import ModelVersion
from schemas.types import utcnow

log = logging.getLogger(__name__)


def _engine(target: Engine | str) -> tuple[Engine, bool]:
    if isinstance(target, Engine):
        return target, False
    engine = db.make_engine(target)
    db.require_migrated(engine)
    return engine, True


def _champion(session: Session) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(col(ModelVersion.status) == "champion")).first()


def register(target: Engine | str, *, version: str, path: str, base_model: str, metrics: dict[str, Any],
             train_args: dict[str, Any], promote: bool = False, parent_version: str | None = None,
             trained_until_label_id: int | None = None, notes: str | None = None) -> ModelVersion:
    """Insert a version; it becomes champion when ``promote`` or when no champion exists (see module doc)."""
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            if session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).first():
                raise ConfigError(f"model version {version!r} is already registered; choose another --version")
            row = ModelVersion(version=version, path=path, base_model=base_model, metrics=metrics,
                               train_args=train_args, parent_version=parent_version,
                               trained_until_label_id=trained_until_label_id, notes=notes)
            current = _champion(session)
            if promote or current is None:
                if current is not None:
                    current.status = "retired"
                    session.add(current)
                    session.flush()  # retire first: at no point two champions
                row.status, row.promoted_at = "champion", utcnow()
            session.add(row)
            session.flush()
            session.refresh(row)
        log.info("registered model %s as %s", version, row.status)
        return row
    finally:
        if owned:
            engine.dispose()


def champion(target: Engine | str) -> ModelVersion | None:
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            return _champion(session)
    finally:
        if owned:
            engine.dispose()


def list_versions(target: Engine | str) -> list[ModelVersion]:
    """All versions, oldest first."""
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            return list(session.exec(select(ModelVersion).order_by(col(ModelVersion.created_at),
                                                                   col(ModelVersion.id))))
    finally:
        if owned:
            engine.dispose()


def promote(target: Engine | str, version: str) -> ModelVersion:
    """Make ``version`` champion and retire the current one."""
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            row = session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).first()
            if row is None:
                raise ConfigError(f"model version {version!r} is not registered; see the model_version table")
            current = _champion(session)
            if current is not None and current.id != row.id:
                current.status = "retired"
                session.add(current)
                session.flush()
            row.status, row.promoted_at = "champion", utcnow()
            session.add(row)
            session.flush()
            session.refresh(row)
        log.info("promoted model %s to champion", version)
        return row
    finally:
        if owned:
            engine.dispose()


def rollback(target: Engine | str) -> ModelVersion:
    """Retire the champion and re-promote the version promoted most recently before it."""
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            current = _champion(session)
            if current is None:
                raise ConfigError("there is no champion model to roll back")
            query = select(ModelVersion).where(col(ModelVersion.status) == "retired",
                                               col(ModelVersion.promoted_at).is_not(None),
                                               col(ModelVersion.id) != current.id)
            if current.promoted_at is not None:  # so that a second rollback goes further back
                query = query.where(col(ModelVersion.promoted_at) < current.promoted_at)
            previous = session.exec(
                query.order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc())
            ).first()
            if previous is None:
                raise ConfigError(f"cannot roll back {current.version!r}: no earlier champion exists")
            current.status = "retired"
            session.add(current)
            session.flush()
            previous.status = "champion"  # promoted_at stays: it orders the champions' history
            session.add(previous)
            session.flush()
            session.refresh(previous)
        log.info("rolled back from %s to %s", current.version, previous.version)
        return previous
    finally:
        if owned:
            engine.dispose()
