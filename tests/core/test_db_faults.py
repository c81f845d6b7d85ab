"""Outage or data? The rule that decides between retrying a batch and dead-lettering rows, on real errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc, text

from monitor.core.db_faults import describe, is_outage


def raised(engine: object, *statements: str) -> BaseException:
    with pytest.raises(exc.SQLAlchemyError) as caught, engine.connect() as connection:  # type: ignore[attr-defined]
        for statement in statements:
            connection.execute(text(statement))
    return caught.value


def test_postgresql_errors(pg_url: str) -> None:
    engine = create_engine(pg_url, hide_parameters=True)
    check = raised(engine, "CREATE TEMP TABLE t (x int CHECK (x > 0))", "INSERT INTO t VALUES (-1)")
    assert not is_outage(check) and "23514" in describe(check)
    too_long = raised(engine, "CREATE TEMP TABLE u (x varchar(2))", "INSERT INTO u VALUES ('abc')")
    assert not is_outage(too_long)
    # Insufficient resources (class 53), the family of "disk full" (53100): a temp-file limit hit by a sort.
    resources = raised(engine, "SET work_mem = '64kB'", "SET temp_file_limit = '64kB'",
                       "SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC")
    assert is_outage(resources) and "[53" in describe(resources)
    # The server ends the session (operator intervention, 57P01) as on a restart.
    shutdown = raised(engine, "SELECT pg_terminate_backend(pg_backend_pid())", "SELECT 1")
    assert is_outage(shutdown)
    engine.dispose()
    refused = raised(create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"), "SELECT 1")
    assert is_outage(refused) and "OperationalError" in describe(refused)


def test_sqlite_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY CHECK (x > 0))"))
    assert not is_outage(raised(engine, "INSERT INTO t VALUES (-1)"))
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        locked = raised(engine, "INSERT INTO t VALUES (1)")
        assert is_outage(locked) and "locked" in describe(locked)
    finally:
        holder.rollback()
        holder.close()
    engine.dispose()
