"""Engine, sessions and migrations for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, pool
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from monitor.core.errors import DatabaseNotMigratedError
from monitor.core.settings import mask_url

log = logging.getLogger(__name__)

# Every engine this process made, so shutdown (and test teardown) can close pooled connections that an owner
# forgot to dispose; a pooled connection left to the garbage collector is an unclosed socket.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "migrations"


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets the dashboard read while the consumer writes; busy_timeout waits out a concurrent writer
    # instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    # FULL: a commit is on disk before the consumer commits its Kafka offsets, so a power loss cannot drop a batch
    # whose offsets are committed (WAL with NORMAL may lose the last transactions). Cost: `finpulse bench sqlite`.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url``; SQLite files get their folder created and WAL mode."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True,
                               **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # hide_parameters: an error must never copy a batch's rows (message text) into a log line.
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)
    _ENGINES.add(engine)
    return engine


def dispose_engines(database: str | None = None) -> None:
    """Close the pooled connections of every engine made here (only those on ``database`` if given)."""
    for engine in list(_ENGINES):
        if database is None or engine.url.database == database:
            engine.dispose()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Escape '%' because alembic's config is an ini parser with interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _run_migrations(url: str, run: Callable[[Config], None]) -> None:
    """Run an Alembic command on one connection of :func:`make_engine` (its SQLite pragmas and folder creation
    apply), handed to ``schemas/migrations/env.py`` through ``config.attributes``."""
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            run(config)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    _run_migrations(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    _run_migrations(url, lambda config: command.downgrade(config, revision))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_migrated(engine: Engine) -> None:
    """Refuse to run against a database whose schema is not at the code's head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        safe_url = mask_url(engine.url.render_as_string(hide_password=True))  # and ?password=
        raise DatabaseNotMigratedError(
            f"database {safe_url} is at migration {current or 'none'} but this finpulse needs {head}; "
            "run `finpulse db upgrade` first"
        )
