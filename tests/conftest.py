"""Shared fixtures: a real broker, real databases (SQLite and PostgreSQL) and a tiny real model."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from monitor.core import db
from monitor.stream.broker import EmbeddedBroker, create_topics

# The suite pins the torch engine, so that tests of other features neither time an engine race nor export ONNX at
# every model load; tests/scoring/test_onnx.py runs ONNX Runtime and the auto choice explicitly.
os.environ.setdefault("FINPULSE_BACKEND", "torch")

PG_ADMIN_URL = os.environ.get("FINPULSE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# --- broker ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One tansu broker on a free port for the whole session (topics are unique per test)."""
    log_file = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_file=log_file) as embedded:
        yield embedded


@pytest.fixture
def topics(broker: EmbeddedBroker) -> tuple[str, str]:
    """A fresh (news, dead-letter) topic pair with 4 partitions."""
    suffix = uuid.uuid4().hex[:10]
    news, dlq = f"news-{suffix}", f"news-{suffix}.dlq"
    create_topics(broker.bootstrap, [news, dlq], partitions=4)
    return news, dlq


# --- databases -------------------------------------------------------------------------------------------------
def _pg_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any connection failure means "not here"
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    available = _pg_available()
    if not available and os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; .ci/run must start it")
    return available


def make_scratch_pg(pg_available: bool) -> Iterator[str]:
    if not pg_available:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}; start it or set FINPULSE_TEST_PG_URL")
    name = f"finpulse_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        db.dispose_engines(name)  # engines a test or a CLI command left open on the scratch database
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """An empty scratch PostgreSQL database, dropped afterwards."""
    yield from make_scratch_pg(pg_available)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'finpulse.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_available: bool) -> Iterator[str]:
    """A migrated database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'finpulse.db'}"
        db.upgrade(url)
        yield url
    else:
        for url in make_scratch_pg(pg_available):
            db.upgrade(url)
            yield url


# --- model -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT classifier (negative/neutral/positive) with the MiniLM tokenizer."""
    from tests.helpers import make_tiny_classifier

    return make_tiny_classifier(tmp_path_factory.mktemp("tiny-model"))
