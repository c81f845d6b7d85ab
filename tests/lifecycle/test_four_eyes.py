"""Four eyes on the model (FINPULSE_RETRAIN_PROMOTION=approve) and whose labels retraining uses, on SQLite and
PostgreSQL with a tiny real model: a candidate that passes the gate waits, unserved, until an admin other than its
last labeller approves it; viewers' labels are neither trained on nor gold."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from monitor.app import app
from monitor.core import audit, db
from monitor.core.accounts import PermissionDenied, Principal
from monitor.core.settings import Settings, get_settings
from monitor.lifecycle import registry
from monitor.lifecycle.registry import ApprovalRefused
from monitor.lifecycle.retrain import SCHEDULER, retrain
from monitor.lifecycle.retrain_data import assign_splits, load_labels
from monitor.scoring.champion import champion as served_champion
from schemas.retraining import JobRun
from tests.retrain_helpers import add_labels, make_champion, retrain_settings, settings_env

ALICE, BOB = Principal("alice", "admin", "dashboard"), Principal("bob", "admin", "cli")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    made = db.make_engine(db_url)
    yield made
    made.dispose()


def cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *args: str) -> tuple[str, BaseException | None]:
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        get_settings.cache_clear()
    return result.output, result.exception


def actions(engine: Engine) -> list[tuple[str, str, str, str]]:
    return [(e.action, e.target, e.actor, e.source) for e in sorted(audit.events(engine), key=lambda e: e.id or 0)]


def test_approval_needs_an_admin_other_than_the_last_labeller(
    db_url: str, engine: Engine, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = retrain_settings(db_url, tmp_path, retrain_promotion="approve")
    v0 = make_champion(db_url, settings.models_dir, tiny_model_dir)
    add_labels(engine, 0, 3, by="bob", role="analyst")
    [*_, last] = add_labels(engine, 3, 2, by="alice", role="admin")
    [viewer] = add_labels(engine, 5, 1, by="victor", role="viewer")  # newest, but never trained on
    shutil.copytree(v0, settings.models_dir / "v1")
    registry.register(engine, version="v1", path=str(settings.models_dir / "v1"), base_model=str(tiny_model_dir),
                      metrics={}, train_args={}, parent_version="v0", trained_until_label_id=viewer,
                      gate={"decision": "promoted"}, awaiting_approval=True, by=SCHEDULER)
    assert registry.champion(engine).version == "v0"  # type: ignore[union-attr]
    assert served_champion(engine).version == "v0"  # type: ignore[union-attr]  # what consumers load
    out, _ = cli(monkeypatch, settings, "models", "list")
    assert next(line for line in out.splitlines() if line.startswith("v1")).endswith("awaiting approval")

    for who in (Principal("ann", "analyst", "dashboard"), Principal("vic", "viewer", "dashboard")):
        with pytest.raises(PermissionDenied, match=f"{who.name} is a {who.role}; approve needs the admin role"):
            registry.approve(engine, "v1", by=who, settings=settings)
    refusal = f"alice labelled the newest data v1 was trained on (labelled_news id {last}); another admin"
    with pytest.raises(ApprovalRefused, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        registry.approve(engine, "v1", by=ALICE, settings=settings)
    with pytest.raises(ApprovalRefused, match="alice labelled the newest data"):  # promoting it is approving it
        registry.promote(engine, "v1", by=ALICE, settings=settings)
    out, refused = cli(monkeypatch, settings, "models", "approve", "v1", "--actor", "alice")
    assert isinstance(refused, ApprovalRefused) and "\n" not in str(refused)
    with pytest.raises(ApprovalRefused, match="model v0 does not await approval"):
        registry.approve(engine, "v0", by=BOB, settings=settings)
    assert registry.champion(engine).version == "v0"  # type: ignore[union-attr]

    out, failed = cli(monkeypatch, settings, "models", "approve", "v1", "--actor", "bob")
    assert failed is None and "v1 approved by bob; it is now champion" in out, out
    rows = {row.version: row for row in registry.list_versions(engine)}
    assert (rows["v0"].status, rows["v1"].status, rows["v1"].awaiting_approval) == ("retired", "champion", False)
    assert rows["v1"].approved_by == "bob" and rows["v1"].approved_at is not None
    assert served_champion(engine).version == "v1"  # type: ignore[union-attr]
    assert actions(engine) == [("model.register", "model v1", "scheduler", "scheduler"),
                               ("model.approve", "model v1", "bob", "cli")]
    approval = max(audit.events(engine), key=lambda e: e.id or 0)
    assert approval.role == "admin" and approval.before == {"champion": "v0"}
    assert approval.after == {"champion": "v1", "approved_by": "bob", "forced": False}

    # A candidate gated against an earlier champion is stale: approving it would skip the current one.
    shutil.copytree(v0, settings.models_dir / "v2")
    registry.register(engine, version="v2", path=str(settings.models_dir / "v2"), base_model=str(tiny_model_dir),
                      metrics={}, train_args={}, parent_version="v0", awaiting_approval=True, by=SCHEDULER)
    with pytest.raises(ApprovalRefused, match="v2 was gated against v0 but v1 is champion now"):
        registry.approve(engine, "v2", by=BOB, settings=settings)


def test_labels_of_viewers_are_neither_trained_on_nor_gold(db_url: str, engine: Engine, tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    settings = retrain_settings(db_url, tmp_path, retrain_promotion="approve")
    make_champion(db_url, settings.models_dir, tiny_model_dir)
    old = add_labels(engine, 0, 4)  # labelled before accounts existed: no role, still used
    viewer = add_labels(engine, 4, 30, by="victor", role="viewer")
    analyst = add_labels(engine, 34, 4, by="ann", role="analyst")
    assign_splits(engine, settings.retrain_gold_fraction)
    used = [item.id for item in load_labels(engine)]
    assert used == old + analyst
    gold = [item.id for item in load_labels(engine, split="gold")]
    assert gold and not set(gold) & set(viewer)
    skipped = retrain(settings, engine=engine)  # 30 viewer labels would pass FINPULSE_RETRAIN_MIN_LABELS=20
    assert skipped.status == "skipped" and skipped.reason.startswith("8 new labels since v0")


@pytest.mark.slow
def test_a_gated_candidate_waits_for_approval_unserved(
    db_url: str, engine: Engine, tiny_model_dir: Path, tmp_path: Path,
) -> None:
    settings = retrain_settings(db_url, tmp_path, retrain_promotion="approve")
    make_champion(db_url, settings.models_dir, tiny_model_dir)
    ids = add_labels(engine, 0, 30, by="bob", role="admin")
    add_labels(engine, 30, 15, by="victor", role="viewer", wrong_training_labels=True)  # ignored
    ids += add_labels(engine, 45, 30, by="alice", role="admin")
    outcome = retrain(settings, engine=engine, version="v1")
    assert (outcome.status, outcome.version) == ("awaiting", "v1"), outcome.reason
    assert outcome.gate is not None and outcome.gate["decision"] == "promoted"
    assert outcome.gate["labels"]["new"] == 60  # the viewer's 15 left out
    rows = {row.version: row for row in registry.list_versions(engine)}
    assert (rows["v0"].status, rows["v1"].status, rows["v1"].awaiting_approval) == ("champion", "candidate", True)
    assert rows["v1"].trained_until_label_id == max(ids) and rows["v1"].promoted_at is None
    assert served_champion(engine).version == "v0"  # type: ignore[union-attr]  # consumers keep serving v0
    with Session(engine) as session:
        run = session.exec(select(JobRun).where(col(JobRun.job) == "retrain")).one()
    assert run.status == "awaiting" and run.details["awaiting_approval"] is True

    with pytest.raises(ApprovalRefused, match=f"labelled_news id {max(ids)}"):
        registry.approve(engine, "v1", by=ALICE, settings=settings)
    assert registry.approve(engine, "v1", by=BOB, settings=settings).status == "champion"
    assert served_champion(engine).version == "v1"  # type: ignore[union-attr]
    assert [a[0] for a in actions(engine)] == ["model.register", "model.approve"]
