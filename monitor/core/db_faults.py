"""Which database errors are outages (retry the same work later) and which are about the data (isolate the row).

The consumer backs off and retries on an outage, and bisects a batch to dead-letter the offending rows on a data
error; getting this wrong either dead-letters good news during an outage or stalls the stream on one bad row.
So the rule errs towards "outage": only errors that a different row would not have raised count as data errors.
"""

from __future__ import annotations

from sqlalchemy import exc

from monitor.core.errors import FinpulseError

# SQLSTATE classes that say nothing about the row: connection (08), transaction rollback (40: serialization,
# deadlock), insufficient resources (53: disk full, out of memory, too many connections), operator intervention
# (57: admin shutdown, crash shutdown, cannot connect now), system error (58) and internal error (XX).
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58", "XX")
# SQLite reports outages as OperationalError texts.
TRANSIENT_SQLITE_TEXTS = ("locked", "busy", "disk i/o", "unable to open", "database or disk is full", "readonly")


class DatabaseUnavailable(FinpulseError):
    """The database cannot take the write now; the same write should be retried later."""


def sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code else None


def is_outage(error: BaseException) -> bool:
    """True when ``error`` is about the database, not about the rows being written."""
    if isinstance(error, DatabaseUnavailable | exc.DisconnectionError | exc.InterfaceError | exc.TimeoutError):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    code = sqlstate(error)
    if code is not None:
        return code[:2] in TRANSIENT_SQLSTATE_CLASSES
    if isinstance(error, exc.OperationalError):
        text = str(getattr(error, "orig", error)).lower()
        return any(marker in text for marker in TRANSIENT_SQLITE_TEXTS) or "sqlite" not in type(
            getattr(error, "orig", error)).__module__
    # A schema mismatch or a bug in a statement (ProgrammingError) fails for every row alike: not data.
    return isinstance(error, exc.ProgrammingError | exc.InternalError)


def describe(error: BaseException) -> str:
    """One line naming the error, without statement parameters (engines are made with hide_parameters)."""
    orig = getattr(error, "orig", None) or error
    first = (str(orig).strip().splitlines() or [""])[0]
    code = sqlstate(error)
    return f"{type(orig).__name__}{f' [{code}]' if code else ''}: {first[:200]}"


def database_unreachable(error: BaseException) -> str:
    """One line for a command that cannot reach its database: which one (password hidden), why, and the fix."""
    try:
        from monitor.core.settings import get_settings, safe_database_url  # lazy: startup

        where = f"database {safe_database_url(get_settings().database_url)}"
    except Exception:  # noqa: BLE001 - the message must come out even if the settings cannot be read
        where = "the database"
    return (f"{where} is unreachable ({describe(error)}); start it, or fix FINPULSE_DATABASE_URL. "
            "`finpulse consume` waits for it instead (FINPULSE_OUTAGE_DEADLINE_S)")
