"""The outbox's claim and lease SQL: which sender may send a ``notification`` row, and for how long.

A *claim* is a conditional UPDATE of a due row (``pending``, or ``sending`` with an expired lease) that sets
``status='sending'``, counts the attempt, writes a fresh uuid4 ``lease_token`` (the fencing token) and leases the
row until now + ``notify_lease_s``. It only succeeds while the row is still as the sender read it and still due, so
of two senders racing for one row exactly one wins, and a lease renewed in the meantime is never taken over.

Every later write for that claim is conditional on ``id`` *and* the token: :func:`renew` (extend the lease) and
:func:`finish` (record the outcome) return False once another sender has taken the row over, so a sender whose
lease expired can neither keep the row nor overwrite the new owner's outcome. :class:`LeaseKeeper` renews a
drain's claims every lease/3 seconds on a small thread while it sends, so a slow but alive sender keeps its rows;
a sender that died stops renewing, and its rows are taken over once the lease runs out.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from monitor.core.db import session_scope
from schemas.alerts import Notification
from schemas.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A row this sender leased, as it was read before the claim, and the fencing token of the claim."""

    row: Notification
    token: str

    @property
    def id(self) -> int:
        assert self.row.id is not None  # nosec B101 # narrows the type: a claimed row was read from its table
        return self.row.id

    @property
    def attempt(self) -> int:
        """The attempt this claim counts (the claim incremented ``attempts``)."""
        return self.row.attempts + 1


def claim_due(engine: Engine, now: datetime, lease_s: float, limit: int, max_attempts: int | None = None
              ) -> list[Claim]:
    """Lease up to ``limit`` due rows to this sender, each under a fresh token. A row whose senders kept dying
    mid-send (still 'sending' after ``max_attempts`` claims) is marked failed instead of being sent for ever."""
    lease_until = now + timedelta(seconds=lease_s)
    claimed = []
    with session_scope(engine) as session:
        due = session.execute(
            select(Notification)
            .where(col(Notification.status).in_(("pending", "sending")), col(Notification.next_attempt_at) <= now)
            .order_by(col(Notification.next_attempt_at), col(Notification.id)).limit(limit)
        ).scalars().all()
        for row in due:
            given_up = max_attempts is not None and row.status == "sending" and row.attempts >= max_attempts
            token = str(uuid.uuid4())
            previous = (col(Notification.lease_token).is_(None) if row.lease_token is None
                        else col(Notification.lease_token) == row.lease_token)
            # The claim: still as read (another sender that got there first changed status/attempts/token) and
            # still due (a renewal that landed since the read moved next_attempt_at past now).
            result = session.execute(
                update(Notification).where(
                    col(Notification.id) == row.id, col(Notification.status) == row.status,
                    col(Notification.attempts) == row.attempts, previous,
                    col(Notification.next_attempt_at) <= now,
                ).values(_given_up(row.attempts, now) if given_up else
                         {"status": "sending", "attempts": row.attempts + 1, "lease_token": token,
                          "next_attempt_at": lease_until, "updated_at": now})
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1 and given_up:  # type: ignore[attr-defined]
                log.error("notification %s: its sender died mid-send %d times; marked failed", row.id, row.attempts)
            elif result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(Claim(row, token))
        session.expunge_all()
    return claimed


def _given_up(attempts: int, now: datetime) -> dict[str, object]:
    """The row's final state when its senders kept dying mid-send: failed, with no lease."""
    values: dict[str, object] = {"status": "failed", "updated_at": now,
                                 "last_error": f"its sender died mid-send {attempts} times; not retried"}
    values["lease_token"] = None
    return values


def _held(claim: Claim) -> tuple[ColumnElement[bool], ...]:
    return (col(Notification.id) == claim.id, col(Notification.lease_token) == claim.token,
            col(Notification.status) == "sending")


def renew(engine: Engine, claim: Claim, lease_s: float) -> bool:
    """Extend the claim's lease to now + ``lease_s``; False when the row is no longer ours."""
    now = utcnow()
    with session_scope(engine) as session:
        result = session.execute(
            update(Notification).where(*_held(claim))
            .values(next_attempt_at=now + timedelta(seconds=lease_s), updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def finish(engine: Engine, claim: Claim, values: dict[str, object]) -> bool:
    """Record the outcome of the claim (``values``) and end its lease; False when the row is no longer ours."""
    with session_scope(engine) as session:
        result = session.execute(
            update(Notification).where(*_held(claim))
            .values(**values, lease_token=None)
            .execution_options(synchronize_session=False)
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class LeaseKeeper:
    """Renews the leases of one drain's claims every ``lease_s / 3`` seconds on its own thread, while it sends.

    Use as a context manager around the sends; :meth:`confirm` before each send, :meth:`release` before recording
    each outcome. A claim whose renewal is refused is *lost* (another sender took it over): it is no longer renewed
    and :meth:`confirm` says False.
    """

    def __init__(self, engine: Engine, lease_s: float, claims: list[Claim]) -> None:
        self.engine, self.lease_s = engine, lease_s
        self._held = {claim.id: claim for claim in claims}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="finpulse-notifier-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def confirm(self, claim: Claim) -> bool:
        """Re-check the claim right before sending (a renewal, so the send starts with a whole lease)."""
        with self._lock:
            if claim.id not in self._held:
                return False
        if renew(self.engine, claim, self.lease_s):
            return True
        self.release(claim)
        return False

    def release(self, claim: Claim) -> None:
        """Stop renewing ``claim`` (its outcome is about to be recorded, or it was lost)."""
        with self._lock:
            self._held.pop(claim.id, None)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                held = list(self._held.values())
            for claim in held:
                try:
                    kept = renew(self.engine, claim, self.lease_s)
                except Exception as error:  # noqa: BLE001 - a database hiccup: retry next tick, the lease may hold
                    log.warning("notifier: renewing the lease of notification %s failed (%s); retrying", claim.id,
                                type(error).__name__)
                    continue
                if not kept:
                    with self._lock:
                        lost = self._held.pop(claim.id, None) is not None  # not released meanwhile: really lost
                    if lost:
                        log.warning("notification %s: lease taken over by another sender while sending", claim.id)
