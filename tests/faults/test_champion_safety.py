"""A champion that cannot take the fleet down: real models (the tiny BERT), real databases, broken model files.

* Promotion (registry function, CLI) test-loads the model and refuses one that does not load or scores NaN.
* A broken model forced into the registry as champion: a consumer starting up serves the last good version and
  records the refusal in the database; a restart serves the last good version without trying the broken one;
  fixing the model and promoting it again serves it.
* A hot swap to a broken champion keeps the old model serving and records the refusal.
* The Models page shows the refusal and what the consumers serve.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from streamlit.testing.v1 import AppTest

from dashboards.auth import hash_password
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.core.errors import ConfigError, ModelLoadError
from monitor.core.settings import Settings, get_settings, load_settings
from monitor.lifecycle import registry
from monitor.scoring.model_source import ModelSource
from schemas.consumers import ConsumerHeartbeat
from schemas.registry import ModelVersion
from schemas.types import utcnow
from tests.finetune.train_helpers import run_cli
from tests.stream_helpers import wait_for

ADMIN = Principal("test-admin", "admin", "cli")

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


def good(tiny: Path, folder: Path, version: str) -> Path:
    """A copy of the tiny model that names itself ``version`` (rows' ``news.model_version``)."""
    shutil.copytree(tiny, folder)
    (folder / "finpulse_model.json").write_text(f'{{"kind": "sequence-classification", "version": "{version}"}}')
    return folder


def truncated(tiny: Path, folder: Path, version: str) -> Path:
    """The weights file cut in half, as a copy interrupted mid-way leaves it."""
    good(tiny, folder, version)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def nan_weights(tiny: Path, folder: Path, version: str) -> Path:
    """Loads fine, then every probability is NaN (the classifier's weights are)."""
    good(tiny, folder, version)
    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    tensors["classifier.weight"] = torch.full_like(tensors["classifier.weight"], float("nan"))
    save_file(tensors, weights, metadata={"format": "pt"})
    return folder


def add(url: str, version: str, path: Path, promote: bool = False) -> None:
    registry.register(url, version=version, path=str(path), base_model="tiny", metrics={}, train_args={},
                      promote=promote)


def force_champion(url: str, version: str) -> None:
    """What an operator editing the table by hand does: no test-load."""
    engine = db.make_engine(url)
    try:
        with db.session_scope(engine) as session:
            for row in session.exec(select(ModelVersion).where(col(ModelVersion.status) == "champion")):
                row.status = "retired"
                session.add(row)
            session.flush()
            row = session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).one()
            row.status, row.promoted_at = "champion", utcnow()
            session.add(row)
    finally:
        engine.dispose()


def version_row(url: str, version: str) -> ModelVersion:
    return next(row for row in registry.list_versions(url) if row.version == version)


def serving_settings(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(database_url=url, models_dir=tmp_path, device="cpu", model_poll_interval_s=0.2,
                         **overrides)


def test_promotion_test_loads_and_refuses_a_broken_model(
    db_url: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add(db_url, "v1", good(tiny_model_dir, tmp_path / "v1", "v1"))
    add(db_url, "v2", truncated(tiny_model_dir, tmp_path / "v2", "v2"))
    add(db_url, "v3", nan_weights(tiny_model_dir, tmp_path / "v3", "v3"))
    settings = serving_settings(db_url, tmp_path)
    with pytest.raises(ModelLoadError) as refused:
        registry.promote(db_url, "v2", settings=settings, by=ADMIN)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("refusing to promote v2: its test-load from ")
    assert str(tmp_path / "v2") in message and "fix or replace the model files" in message
    with pytest.raises(ModelLoadError, match=r"refusing to promote v3: .*expected three finite probabilities"):
        registry.promote(db_url, "v3", settings=settings, by=ADMIN)
    registry.promote(db_url, "v2", settings=settings, force=True, by=ADMIN)  # the operator insists: no test-load
    shutil.rmtree(tmp_path / "v1")
    with pytest.raises(ModelLoadError, match="refusing to roll back to v1: "):  # a rollback test-loads too
        registry.rollback(db_url, settings=settings, by=ADMIN)
    assert version_row(db_url, "v2").status == "champion"
    good(tiny_model_dir, tmp_path / "v1", "v1")
    assert registry.rollback(db_url, settings=settings, by=ADMIN).version == "v1"

    monkeypatch.setenv("FINPULSE_DATABASE_URL", db_url)
    monkeypatch.setenv("FINPULSE_DEVICE", "cpu")
    get_settings.cache_clear()
    try:
        code, out, err = run_cli(monkeypatch, capsys, "models", "promote", "v3")
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: refusing to promote v3: ") and "finite" in last, err
        assert registry.champion(db_url).version == "v1"  # type: ignore[union-attr]
        code, out, err = run_cli(monkeypatch, capsys, "models", "promote", "v3", "--force")
        assert code == 0 and "v3 is now champion (not test-loaded: --force)" in out, err
    finally:
        get_settings.cache_clear()
    assert version_row(db_url, "v3").status == "champion"


def test_a_broken_champion_forced_into_the_registry_serves_the_last_good_version_across_restarts(
    db_url: str, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    add(db_url, "v1", good(tiny_model_dir, tmp_path / "v1", "v1"))
    add(db_url, "v2", good(tiny_model_dir, tmp_path / "v2", "v2"), promote=True)
    add(db_url, "v3", truncated(tiny_model_dir, tmp_path / "v3", "v3"))
    force_champion(db_url, "v3")
    settings = serving_settings(db_url, tmp_path)
    engine = db.make_engine(db_url)
    try:
        with caplog.at_level(logging.INFO, logger="monitor.scoring"):
            source = ModelSource(settings, engine)
            assert source.current().version == "v2" and source.served_version == "v2"
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and r.name.startswith("monitor.")]
        assert len(warnings) == 1 and warnings[0].startswith("serving v2, the last good version, instead of the "
                                                             "registry's: champion v3 does not load (")
        assert source.refusal is not None and source.refusal.endswith("; serving v2")
        refused = version_row(db_url, "v3")
        assert refused.status == "champion" and refused.refused_at is not None and refused.refused_reason
        assert "refused by consumer" in (refused.notes or "")

        caplog.clear()
        with caplog.at_level(logging.INFO, logger="monitor.scoring"):  # a restart, or another consumer
            restarted = ModelSource(settings, engine)
            assert restarted.current().version == "v2"
        assert not any("loaded model v3" in r.getMessage() or "refusing model" in r.getMessage()
                       for r in caplog.records), "the refused champion was tried again"
        assert "champion v3 was refused at " in (restarted.refusal or "")
        assert version_row(db_url, "v3").refused_at == refused.refused_at

        shutil.rmtree(tmp_path / "v3")
        good(tiny_model_dir, tmp_path / "v3", "v3")  # fixed: promoting it again test-loads it and clears the refusal
        assert registry.promote(db_url, "v3", settings=settings, by=ADMIN).refused_at is None
        wait_for(lambda: restarted.current().version == "v3", 60, "the fixed v3 to be swapped in")
        assert restarted.refusal is None and ModelSource(settings, engine).current().version == "v3"
    finally:
        engine.dispose()


def test_when_nothing_loads_start_up_fails_with_one_line(sqlite_url: str, tiny_model_dir: Path,
                                                         tmp_path: Path) -> None:
    db.upgrade(sqlite_url)
    add(sqlite_url, "v1", truncated(tiny_model_dir, tmp_path / "v1", "v1"))  # the first version: champion
    engine = db.make_engine(sqlite_url)
    try:
        # A fault of this host's settings is not the model's: nothing is refused.
        wrong = serving_settings(sqlite_url, tmp_path, backend="onnx", precision="bf16")
        with pytest.raises(ConfigError, match="FINPULSE_PRECISION=bf16 needs FINPULSE_BACKEND=torch"):
            ModelSource(wrong, engine).current()
        assert version_row(sqlite_url, "v1").refused_at is None
        with pytest.raises(ConfigError) as error:
            ModelSource(serving_settings(sqlite_url, tmp_path), engine).current()
        assert "\n" not in str(error.value) and str(error.value).startswith("no model to serve: champion v1 does "
                                                                              "not load (")
        assert str(error.value).endswith("no earlier champion loads; promote a working version with `finpulse "
                                         "models promote VERSION` or set FINPULSE_MODEL_DIR")
        assert version_row(sqlite_url, "v1").refused_at is not None
    finally:
        engine.dispose()


def test_a_hot_swap_to_a_broken_champion_keeps_the_old_model_and_records_the_refusal(
    db_url: str, tiny_model_dir: Path, tmp_path: Path,
) -> None:
    add(db_url, "v1", good(tiny_model_dir, tmp_path / "v1", "v1"))
    add(db_url, "v2", nan_weights(tiny_model_dir, tmp_path / "v2", "v2"))
    settings = serving_settings(db_url, tmp_path)
    engine = db.make_engine(db_url)
    try:
        source = ModelSource(settings, engine)
        serving = source.current()
        assert serving.version == "v1"
        registry.promote(db_url, "v2", settings=settings, force=True, by=ADMIN)  # untested: consumers must catch it
        wait_for(lambda: source.current() is serving and version_row(db_url, "v2").refused_at is not None, 60,
                 "the consumer to refuse v2")
        refused = version_row(db_url, "v2")
        assert refused.status == "champion" and "finite probabilities" in (refused.refused_reason or "")
        assert source.refusal is not None and source.refusal.startswith("champion v2 refused (")
        for _ in range(5):  # polls go on; the refused champion is neither swapped in nor tried again
            assert source.current() is serving
        assert version_row(db_url, "v2").refused_at == refused.refused_at
        assert ModelSource(settings, engine).current().version == "v1"  # a restart: the last good version
    finally:
        engine.dispose()


def test_the_models_page_shows_refusals_and_what_consumers_serve_and_refuses_a_broken_promotion(
    sqlite_url: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    db.upgrade(sqlite_url)
    now = utcnow()
    broken = truncated(tiny_model_dir, tmp_path / "v3", "v3")
    engine: Engine = db.make_engine(sqlite_url)
    try:
        with Session(engine) as session:
            session.add_all([
                ModelVersion(version="v1", path="v1", base_model="tiny", status="retired", promoted_at=now),
                ModelVersion(version="v2", path="v2", base_model="tiny", status="champion", promoted_at=now,
                             refused_at=now, refused_reason="ModelLoadError: v2: could not load model"),
                ModelVersion(version="v3", path=str(broken), base_model="tiny"),
                ConsumerHeartbeat(member="worker-a:1", group_id="g", topic="t", model_version="v1",
                                  status="model_refused", detail="champion v2 refused; serving v1", updated_at=now),
            ])
            session.commit()
    finally:
        engine.dispose()
    monkeypatch.setenv("FINPULSE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FINPULSE_DEVICE", "cpu")
    monkeypatch.setenv("FINPULSE_DASHBOARD_PASSWORD_HASH", hash_password("pw"))
    monkeypatch.delenv("FINPULSE_DASHBOARD_AUTH_DISABLED", raising=False)
    get_settings.cache_clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.text_input(key="login_password").input("pw")
        next(b for b in at.button if b.label == "Log in").click().run()
        at.switch_page("views/models.py").run()
        assert not at.exception, [e.message for e in at.exception]
        table = at.dataframe[0].value
        assert table.loc[table["version"] == "v2", "refused because"].item() == \
            "ModelLoadError: v2: could not load model"
        assert table.loc[table["version"] == "v1", "refused (UTC)"].isna().all()
        assert any(w.value.startswith("Champion v2 was refused by a consumer at ") for w in at.warning)
        serving = at.dataframe[1].value
        assert list(serving["serves"]) == ["v1"] and list(serving["status"]) == ["model_refused"]
        next(w for w in at.selectbox if w.label == "Version to promote").set_value("v3")
        next(w for w in at.checkbox if w.label.startswith("Serve this version")).check()
        next(b for b in at.button if b.label == "Promote").click().run()
    finally:
        get_settings.cache_clear()
    assert not at.exception and [e.value for e in at.error if "refusing to promote v3: " in e.value]
    assert version_row(sqlite_url, "v2").status == "champion"
