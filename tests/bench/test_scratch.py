"""Every bench phase writes to its own database, also under --database-url (SQLite file or PostgreSQL schema)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from monitor.bench.run import shown
from monitor.bench.scratch import drop_phase_databases, phase_database
from monitor.core import db
from schemas.news import News
from schemas.types import utcnow
from tests.signal_helpers import scored_news


def _count(url: str) -> int:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(News.__table__)).scalar_one())  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_phases_get_separate_databases_that_are_dropped_afterwards(db_url: str, tmp_path: Path) -> None:
    urls = [phase_database(db_url, tmp_path, "r1", phase) for phase in ("e2e1", "layout-2x1")]
    assert len(set(urls)) == 2 and db_url not in urls
    for url in urls:
        db.upgrade(url)
    engine = db.make_engine(urls[0])
    with db.session_scope(engine) as session:
        session.add(scored_news("a", utcnow(), "a story", 0.5, tickers=["AAPL"]))
    engine.dispose()
    assert [_count(url) for url in urls] == [1, 0]
    assert _count(db_url) == 0  # the named database itself is never written

    drop_phase_databases(db_url, urls)
    if db_url.startswith("sqlite"):
        assert not any(Path(make_url(url).database or "").exists() for url in urls)
    else:
        engine = db.make_engine(db_url)
        with engine.connect() as connection:
            left = connection.execute(text("SELECT count(*) FROM information_schema.schemata "
                                           "WHERE schema_name LIKE 'bench_r1_%'")).scalar_one()
        engine.dispose()
        assert left == 0


def test_the_report_masks_a_database_password() -> None:
    assert "s3cret" not in shown("postgresql+psycopg://user:s3cret@db:5432/finpulse")
