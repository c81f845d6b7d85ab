"""A lock across processes and machines, kept in the project database: one retraining at a time, one alert evaluator.

* **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) on a connection held for the whole
  job. If the holder dies, PostgreSQL drops its connection and the lock with it; nothing can go stale.
* **SQLite**: a ``job_lock`` row with an expiry. Taking it is one conditional statement (an INSERT, or an
  UPDATE of an *expired* row), so two processes cannot both succeed; the holder refreshes the expiry from a
  daemon thread, so a crashed holder's lock lapses after ``ttl_s``.

On PostgreSQL the row is written too, for information only (who holds the lock, since when), so that a waiting
process can say whom it waits for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, text

from monitor.core.db import session_scope
from schemas.retraining import JobLock
from schemas.types import utcnow

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 600.0


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` (Python's hash() changes per process)."""
    return int.from_bytes(hashlib.sha256(f"finpulse:{name}".encode()).digest()[:8], "big", signed=True)


class DbLock:
    """``with DbLock(engine, "retrain") as lock:`` waits for the lock; :meth:`try_acquire` does not wait."""

    def __init__(self, engine: Engine, name: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.engine, self.name, self.ttl_s = engine, name, ttl_s
        self.owner = f"{process_owner()}:{uuid.uuid4().hex[:6]}"  # unique even for two locks in one process
        self.postgres = engine.dialect.name == "postgresql"
        self._connection: Connection | None = None
        self._held = False
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._held

    def holder(self) -> tuple[str, datetime] | None:
        """(owner, since) of the current holder as recorded in ``job_lock``, if any."""
        with Session(self.engine) as session:
            row = session.get(JobLock, self.name)
            if row is None or (not self.postgres and row.expires_at < utcnow()):
                return None
            return row.owner, row.acquired_at

    def try_acquire(self) -> bool:
        if self._held:
            return True
        self._held = self._try_postgres() if self.postgres else self._try_sqlite()
        if self._held:
            log.info("acquired the %r lock as %s", self.name, self.owner)
            if not self.postgres:
                self._stop.clear()
                self._refresher = threading.Thread(target=self._refresh, name=f"lock-{self.name}", daemon=True)
                self._refresher.start()
        return self._held

    def acquire(self, wait: bool = True, poll_s: float = 1.0, log_every_s: float = 30.0,
                timeout_s: float | None = None) -> bool:
        """Take the lock, waiting (and saying so in the log) while another process holds it."""
        started, last_log = time.monotonic(), -log_every_s
        while not self.try_acquire():
            if not wait or (timeout_s is not None and time.monotonic() - started >= timeout_s):
                return False
            if time.monotonic() - last_log >= log_every_s:
                held = self.holder()
                who = f"{held[0]} since {held[1]:%Y-%m-%d %H:%M:%S} UTC" if held else "another process"
                log.info("waiting for the %r lock held by %s (one %s at a time)", self.name, who, self.name)
                last_log = time.monotonic()
            time.sleep(poll_s)
        return True

    def release(self) -> None:
        if not self._held:
            return
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=10)
            self._refresher = None
        try:
            with session_scope(self.engine) as session:
                session.execute(delete(JobLock).where(col(JobLock.name) == self.name, col(JobLock.owner) == self.owner))
        finally:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(self.name)})
                finally:
                    self._connection.close()
                    self._connection = None
            self._held = False
            log.info("released the %r lock", self.name)

    def __enter__(self) -> DbLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    # --- backends ----------------------------------------------------------------------------------------------
    def _try_postgres(self) -> bool:
        # AUTOCOMMIT: the lock belongs to the session, and no transaction stays open for the hours a job may take.
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                      {"key": advisory_key(self.name)}).scalar_one())
        if not got:
            connection.close()
            return False
        self._connection = connection
        now = utcnow()
        with session_scope(self.engine) as session:  # informational row: only the advisory-lock holder writes it
            session.execute(delete(JobLock).where(col(JobLock.name) == self.name))
            session.add(JobLock(name=self.name, owner=self.owner, acquired_at=now, expires_at=now))
        return True

    def _try_sqlite(self) -> bool:
        now = utcnow()
        expires = now + timedelta(seconds=self.ttl_s)
        values: dict[str, Any] = {"owner": self.owner, "acquired_at": now, "expires_at": expires}
        with session_scope(self.engine) as session:
            taken = session.execute(
                update(JobLock).where(col(JobLock.name) == self.name, col(JobLock.expires_at) < now).values(**values)
                .execution_options(synchronize_session=False))
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                log.warning("took over the %r lock: its previous holder's expiry had passed", self.name)
                return True
        try:
            with session_scope(self.engine) as session:
                session.execute(insert(JobLock).values(name=self.name, **values))
            return True
        except IntegrityError:
            return False

    def _refresh(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                with session_scope(self.engine) as session:
                    kept = session.execute(
                        update(JobLock).where(col(JobLock.name) == self.name, col(JobLock.owner) == self.owner)
                        .values(expires_at=utcnow() + timedelta(seconds=self.ttl_s))
                        .execution_options(synchronize_session=False))
                if kept.rowcount != 1:  # type: ignore[attr-defined]
                    log.error("lost the %r lock (refresh found no row owned by %s)", self.name, self.owner)
            except Exception:  # a database hiccup must not kill the job; the next refresh retries
                log.exception("refreshing the %r lock failed", self.name)
