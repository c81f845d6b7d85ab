"""The model registry: versions in the ``model_version`` table, exactly one of them champion.

Policy: a newly trained version is a *candidate*, unless ``promote=True`` or there is no champion yet (the first
model must serve something), in which case it becomes *champion*. Promoting retires the previous champion.
``rollback()`` retires the champion and re-promotes the version that was champion before it.

:func:`promote` and :func:`rollback` test-load the model first, as the consumers would serve it
(:mod:`monitor.lifecycle.model_check`), and refuse a broken one with one line; a successful promotion clears an
earlier refusal (``refused_at``, ``refused_reason``) recorded by a consumer.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.core import db
from monitor.core.errors import ConfigError
from monitor.core.settings import Settings, get_settings
from monitor.scoring.champion import model_path, refusal_text
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


def _check(row: ModelVersion, settings: Settings | None, action: str) -> None:
    """Test-load ``row``'s model as the consumers would (:mod:`monitor.lifecycle.model_check`)."""
    from monitor.lifecycle.model_check import check_model  # lazy: torch

    settings = settings or get_settings()
    check_model(model_path(row, settings), settings, row.version, action)


def _serve(row: ModelVersion) -> None:
    """Make ``row`` serve: it passed its test-load (or was forced), so an earlier refusal no longer holds."""
    if row.refused_at is not None:
        log.warning("model %s; this promotion clears the refusal", refusal_text(row))
    row.status, row.refused_at, row.refused_reason = "champion", None, None


def promote(target: Engine | str, version: str, *, settings: Settings | None = None,
            force: bool = False) -> ModelVersion:
    """Make ``version`` champion and retire the current one, after test-loading it with ``settings`` (default:
    the environment's); a model that fails is refused with :class:`ModelLoadError` and nothing changes.
    ``force`` skips the test-load (the consumers still refuse a broken model and keep the last good one)."""
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            found = session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).first()
        if found is None:
            raise ConfigError(f"model version {version!r} is not registered; see the model_version table")
        if force:
            log.warning("promoting %s without a test-load (--force)", version)
        else:
            _check(found, settings, "promote")
        with db.session_scope(engine) as session:
            row = session.get_one(ModelVersion, found.id)
            current = _champion(session)
            if current is not None and current.id != row.id:
                current.status = "retired"
                session.add(current)
                session.flush()
            _serve(row)
            row.promoted_at = utcnow()
            session.add(row)
            session.flush()
            session.refresh(row)
        log.info("promoted model %s to champion", version)
        return row
    finally:
        if owned:
            engine.dispose()


def rollback(target: Engine | str, *, settings: Settings | None = None, force: bool = False) -> ModelVersion:
    """Retire the champion and re-promote the version promoted most recently before it, after test-loading that
    one as :func:`promote` does."""
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
            found = session.exec(
                query.order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc())
            ).first()
            if found is None:
                raise ConfigError(f"cannot roll back {current.version!r}: no earlier champion exists")
        if not force:
            _check(found, settings, "roll back to")
        with db.session_scope(engine) as session:
            current, previous = session.get_one(ModelVersion, current.id), session.get_one(ModelVersion, found.id)
            current.status = "retired"
            session.add(current)
            session.flush()
            _serve(previous)  # promoted_at stays: it orders the champions' history
            session.add(previous)
            session.flush()
            session.refresh(previous)
        log.info("rolled back from %s to %s", current.version, previous.version)
        return previous
    finally:
        if owned:
            engine.dispose()
