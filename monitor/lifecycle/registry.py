"""The model registry: versions in the ``model_version`` table, exactly one of them champion.

Policy: a newly trained version is a *candidate*, unless ``promote=True`` or there is no champion yet (the first
model must serve something), in which case it becomes *champion*. Promoting retires the previous champion.
``rollback()`` retires the champion and re-promotes the version that was champion before it.

:func:`promote` and :func:`rollback` test-load the model first, as the consumers would serve it
(:mod:`monitor.lifecycle.model_check`), and refuse a broken one with one line; a successful promotion clears an
earlier refusal (``refused_at``, ``refused_reason``) recorded by a consumer.

Every change takes the acting :class:`~monitor.core.accounts.Principal` (``by``), checks its role first and adds
the audit row in the same transaction. **Four eyes** (``FINPULSE_RETRAIN_PROMOTION=approve``): retraining registers
a candidate that passed the gate with ``awaiting_approval``; :func:`approve` (or :func:`promote`) makes it champion
only when ``by`` is not the last labeller of its new data (:func:`last_labeller`).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.core import audit, db
from monitor.core.accounts import Principal, require
from monitor.core.errors import ConfigError, FinpulseError
from monitor.core.settings import Settings, get_settings
from monitor.lifecycle.retrain_data import used_for_training
from monitor.scoring.champion import model_path, refusal_text
from schemas.registry import LabelledNews, ModelVersion
from schemas.types import utcnow

log = logging.getLogger(__name__)


class ApprovalRefused(FinpulseError):
    """The version does not await approval, or the approver labelled its newest data (four eyes)."""


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
             trained_until_label_id: int | None = None, notes: str | None = None,
             gate: dict[str, Any] | None = None, awaiting_approval: bool = False,
             by: Principal | None = None) -> ModelVersion:
    """Insert a version; it becomes champion when ``promote`` or when no champion exists (see module doc).
    With ``by`` (retraining), the registration, and a promotion, are audited; ``promote`` then needs its role."""
    if by is not None and promote:
        require(by, "promote")
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            if session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).first():
                raise ConfigError(f"model version {version!r} is already registered; choose another --version")
            row = ModelVersion(version=version, path=path, base_model=base_model, metrics=metrics,
                               train_args=train_args, parent_version=parent_version,
                               trained_until_label_id=trained_until_label_id, notes=notes, gate=gate,
                               awaiting_approval=awaiting_approval and not promote)
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
            if by is not None:
                audit.record(session, by, "model.register", f"model {version}", None,
                             {"status": row.status, "awaiting_approval": row.awaiting_approval,
                              "gate": (gate or {}).get("decision"), "parent_version": parent_version})
                if row.status == "champion":
                    audit.record(session, by, "model.promote", f"model {version}",
                                 {"champion": current.version if current else None}, {"champion": version})
        log.info("registered model %s as %s%s", version, row.status,
                 " awaiting approval" if row.awaiting_approval else "")
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


def _find(session: Session, version: str) -> ModelVersion:
    found = session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).first()
    if found is None:
        raise ConfigError(f"model version {version!r} is not registered; `finpulse models list` shows them")
    return found


def last_labeller(session: Session, row: ModelVersion) -> tuple[int, str] | None:
    """``(labelled_news.id, labelled_by)`` of the newest label ``row`` trained on that its parent had not:
    ``parent.trained_until_label_id < id <= row.trained_until_label_id``, among the labels retraining uses."""
    if row.trained_until_label_id is None:
        return None
    parent = session.exec(select(ModelVersion).where(col(ModelVersion.version) == row.parent_version)).first()
    since = (parent.trained_until_label_id if parent is not None else None) or 0
    found = session.exec(select(LabelledNews.id, LabelledNews.labelled_by).where(
        col(LabelledNews.id) > since, col(LabelledNews.id) <= row.trained_until_label_id, used_for_training())
        .order_by(col(LabelledNews.id).desc()).limit(1)).first()
    return None if found is None else (int(found[0] or 0), str(found[1]))


def _four_eyes(session: Session, row: ModelVersion, by: Principal) -> None:
    """Refuse the approval of ``row`` by the last labeller of its new data."""
    last = last_labeller(session, row)
    if last is not None and last[1] == by.name:
        raise ApprovalRefused(f"{by.name} labelled the newest data {row.version} was trained on (labelled_news id "
                              f"{last[0]}); another admin must approve it (four eyes)")


def _make_champion(session: Session, row_id: int, by: Principal, action: str, force: bool) -> ModelVersion:
    """Retire the champion, serve ``row_id`` and audit it, in the caller's transaction."""
    row = session.get_one(ModelVersion, row_id)
    current = _champion(session)
    if current is not None and current.id != row.id:
        current.status = "retired"
        session.add(current)
        session.flush()
    _serve(row)
    row.promoted_at = utcnow()
    after: dict[str, Any] = {"champion": row.version, "forced": force}
    if row.awaiting_approval:  # promoting a version that awaits approval approves it (checked by the caller)
        row.awaiting_approval, row.approved_by, row.approved_at = False, by.name, row.promoted_at
        after.update(approved_by=by.name)
    session.add(row)
    session.flush()
    audit.record(session, by, action, f"model {row.version}", {"champion": current.version if current else None},
                 after)
    session.refresh(row)
    return row


def promote(target: Engine | str, version: str, *, by: Principal, settings: Settings | None = None,
            force: bool = False) -> ModelVersion:
    """Make ``version`` champion and retire the current one, after test-loading it with ``settings`` (default:
    the environment's); a model that fails is refused with :class:`ModelLoadError` and nothing changes.
    ``force`` skips the test-load (the consumers still refuse a broken model and keep the last good one).
    A version awaiting approval is approved by this promotion, so its last labeller may not promote it."""
    require(by, "promote")
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            found = _find(session, version)
            if found.awaiting_approval:
                _four_eyes(session, found, by)
        if force:
            log.warning("promoting %s without a test-load (--force)", version)
        else:
            _check(found, settings, "promote")
        with db.session_scope(engine) as session:
            row = _make_champion(session, int(found.id or 0), by, "model.promote", force)
        log.info("promoted model %s to champion (%s)", version, by.name)
        return row
    finally:
        if owned:
            engine.dispose()


def approve(target: Engine | str, version: str, *, by: Principal, settings: Settings | None = None) -> ModelVersion:
    """Four eyes: make ``version``, a retrained candidate awaiting approval, champion. Refused
    (:class:`ApprovalRefused`) when it does not await approval, when the champion changed since its gate, or
    when ``by`` labelled the newest data it was trained on; test-loaded first, as :func:`promote` does."""
    require(by, "approve")
    engine, owned = _engine(target)
    try:
        with db.session_scope(engine) as session:
            found = _find(session, version)
            if not found.awaiting_approval:
                raise ApprovalRefused(f"model {version} does not await approval (status {found.status}); "
                                      "`finpulse models list` shows which versions do")
            current = _champion(session)
            if current is not None and found.parent_version != current.version:
                raise ApprovalRefused(f"model {version} was gated against {found.parent_version} but "
                                      f"{current.version} is champion now; retrain, or promote it explicitly")
            _four_eyes(session, found, by)
        _check(found, settings, "approve")
        with db.session_scope(engine) as session:
            row = _make_champion(session, int(found.id or 0), by, "model.approve", False)
        log.info("model %s approved by %s and promoted to champion", version, by.name)
        return row
    finally:
        if owned:
            engine.dispose()


def rollback(target: Engine | str, *, by: Principal, settings: Settings | None = None,
             force: bool = False) -> ModelVersion:
    """Retire the champion and re-promote the version promoted most recently before it, after test-loading that
    one as :func:`promote` does."""
    require(by, "rollback")
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
            audit.record(session, by, "model.rollback", f"model {previous.version}", {"champion": current.version},
                         {"champion": previous.version, "forced": force})
            session.refresh(previous)
        log.info("rolled back from %s to %s (%s)", current.version, previous.version, by.name)
        return previous
    finally:
        if owned:
            engine.dispose()
