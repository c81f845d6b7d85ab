"""Settings, schemas, migrations and the scorer's loading rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect

from monitor.core import db
from monitor.core.errors import ConfigError, DatabaseNotMigratedError, ModelLoadError
from monitor.core.settings import load_settings
from monitor.scoring.scorer import load_scorer
from schemas import NewsIn


def test_settings_error_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINPULSE_BATCH_MAX_WAIT_MS", "soon")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert "FINPULSE_BATCH_MAX_WAIT_MS" in message and "'soon'" in message


def test_settings_rejects_unknown_database_and_normalises_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINPULSE_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError, match="FINPULSE_DATABASE_URL"):
        load_settings()
    monkeypatch.setenv("FINPULSE_DATABASE_URL", "postgresql://u@h/db")
    assert load_settings().database_url == "postgresql+psycopg://u@h/db"


def test_sasl_needs_a_mechanism(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINPULSE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="SASL_MECHANISM"):
        load_settings()
    monkeypatch.setenv("FINPULSE_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("FINPULSE_KAFKA_SASL_PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert settings.kafka_client_config()["sasl_plain_password"] == "hunter2"


def _news(**overrides: object) -> dict[str, object]:
    news: dict[str, object] = {"id": "n1", "source": "wire", "published_at": "2024-03-01T09:30:00+01:00",
                               "headline": "ACME beats estimates"}
    news.update(overrides)
    return news


def test_news_contract_normalises_tickers_and_requires_timezone() -> None:
    item = NewsIn.model_validate(_news(tickers=["$aapl", "brk.b", "AAPL"]))
    assert item.tickers == ["AAPL", "BRK.B"]
    assert item.published_at.utcoffset() is not None
    for bad in (_news(published_at="2024-03-01T09:30:00"), _news(headline=""), _news(headline="x" * 1001),
                _news(tickers=["not a ticker"]), _news(url="ftp://x"), _news(surprise=1), _news(language="english")):
        with pytest.raises(ValidationError):
            NewsIn.model_validate(bad)


def test_model_text_truncates_body() -> None:
    item = NewsIn.model_validate(_news(body="b" * 50))
    assert item.model_text(10) == "ACME beats estimates. " + "b" * 10
    assert item.model_text(0) == "ACME beats estimates"


def test_migrations_create_tables_and_guard(db_url: str) -> None:
    engine = db.make_engine(db_url)
    assert {"news", "model_version", "labelled_news"} <= set(inspect(engine).get_table_names())
    db.require_migrated(engine)
    db.downgrade(db_url, "base")
    with pytest.raises(DatabaseNotMigratedError, match="finpulse db upgrade"):
        db.require_migrated(engine)
    engine.dispose()


def test_scorer_loads_tiny_model_and_keeps_input_order(tiny_model_dir: Path) -> None:
    scorer = load_scorer(tiny_model_dir, device="cpu", batch_size=2)
    texts = ["short", "a much longer headline about $TSLA and $aapl earnings", "mid length text"]
    predictions = scorer.score(texts)
    assert len(predictions) == 3
    for prediction in predictions:
        assert abs(sum(prediction.probs) - 1) < 1e-3
        assert prediction.score == pytest.approx(prediction.probs[2] - prediction.probs[0])
    assert [e.text for e in predictions[1].entities] == ["TSLA", "AAPL"]
    # Same text alone gives the same answer as in a padded, sorted batch.
    alone = scorer.score([texts[2]])[0]
    assert alone.probs == pytest.approx(predictions[2].probs, abs=2e-2)
    assert scorer.version == "tiny-0"


def test_scorer_refuses_pickles_and_missing_dirs(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_scorer(tmp_path / "nope")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        load_scorer(tmp_path)


def test_list_setting_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINPULSE_NOTIFY_URLS", "slack://x")
    with pytest.raises(ConfigError, match="FINPULSE_NOTIFY_URLS: expected a JSON list"):
        load_settings()
