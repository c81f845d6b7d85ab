"""What CLI commands that change the database share: a migrated session, and who acts (for the audit trail)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmodel import Session

    from monitor.core.accounts import Principal


@contextmanager
def cli_session() -> Iterator[Session]:
    """One transaction on the configured database, refused unless it is migrated to this code's head."""
    from monitor.core import db  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    engine = db.make_engine(get_settings().database_url)
    try:
        db.require_migrated(engine)
        with db.session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()


def actor(name: str | None) -> Principal:
    """``--actor`` if given, else the OS user: the CLI acts as an admin (see the README's Security section)."""
    from monitor.core.audit import cli_principal  # lazy: startup

    return cli_principal(name)
