"""A fresh database for every phase of ``finpulse bench``, also when ``--database-url`` names one.

Phases must not share tables: a later phase draining messages an earlier one stored would insert nothing (the news
id is the idempotency key) or find every story a near-duplicate, and so measure less work. Without a URL each phase
gets its own SQLite file in the work folder; with a SQLite URL, a file beside the named one; with a PostgreSQL URL,
its own schema in the named database (``search_path`` set through the connection's ``options``), dropped at the end
unless ``--keep``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from monitor.core import db

log = logging.getLogger(__name__)

_SCHEMA = re.compile(r"^bench_[a-z0-9_]+$")


def phase_database(base: str | None, workdir: Path, run_id: str, phase: str) -> str:
    """The URL of ``phase``'s own empty database (not yet migrated)."""
    if base is None:
        return f"sqlite:///{workdir / f'{phase}.db'}"
    url = make_url(base)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return f"sqlite:///{workdir / f'{phase}.db'}"
        path = Path(url.database)
        return url.set(database=str(path.with_name(f"{path.stem}-{run_id}-{phase}.db"))).render_as_string(
            hide_password=False)
    schema = re.sub(r"[^a-z0-9_]", "_", f"bench_{run_id}_{phase}".lower())
    engine = db.make_engine(base)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def drop_phase_databases(base: str | None, urls: Iterable[str]) -> None:
    """Remove what :func:`phase_database` made from ``base``: the PostgreSQL schemas, or the SQLite files beside
    the named one (those in the work folder are the caller's to clean)."""
    if base is None:
        return
    if make_url(base).get_backend_name() == "sqlite":
        for url in urls:
            name = make_url(url).database
            for path in Path(name).parent.glob(f"{Path(name).name}*") if name else ():
                path.unlink(missing_ok=True)  # the file and its -wal and -shm
        return
    engine = db.make_engine(base)
    try:
        with engine.begin() as connection:
            for url in urls:
                options = make_url(url).query.get("options", "")
                schema = options.removeprefix("-csearch_path=") if isinstance(options, str) else ""
                if _SCHEMA.match(schema):
                    connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()
