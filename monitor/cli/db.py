"""``finpulse db``: apply and inspect the Alembic migrations of the configured database."""

from __future__ import annotations

from typing import Annotated

import typer

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from monitor.core import db  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    url = get_settings().database_url
    db.upgrade(url, revision)
    typer.echo(f"database at {db.current_revision(db.make_engine(url))} (head {db.head_revision()})")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision and the code's head."""
    from monitor.core import db  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    engine = db.make_engine(get_settings().database_url)
    typer.echo(f"current {db.current_revision(engine) or 'none'}, head {db.head_revision()}")
