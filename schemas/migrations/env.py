"""Alembic environment: runs the migrations on the connection that :func:`monitor.core.db.upgrade` hands over.

The connection comes in ``config.attributes["connection"]`` (Alembic's documented way to share one), so it carries
the engine settings of :mod:`monitor.core.db` (SQLite pragmas) while this package imports nothing above
``schemas``. Run without one (the ``alembic`` command line), it connects to ``sqlalchemy.url`` itself.
"""

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import schemas.tables  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def _migrate(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None  # nosec B101 # narrows the type; alembic fails on a missing URL anyway
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    shared = config.attributes.get("connection")
    if shared is not None:
        _migrate(shared)
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _migrate(connection)
    engine.dispose()


run_migrations()
