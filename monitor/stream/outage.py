"""Riding out an outage: capped exponential back-off with jitter, one log line per attempt, and a deadline.

The consumer keeps the batch it could not finish and retries the same step (write it, acknowledge its dead
letters, commit its offsets) until it succeeds; nothing is committed for a batch that is not in the database.
After ``FINPULSE_OUTAGE_DEADLINE_S`` of the same outage it gives up with one line and exit code 75 (EX_TEMPFAIL),
so an orchestrator restarts it or pages someone; the uncommitted batch is simply re-read then.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from monitor.core.db_faults import DatabaseUnavailable, describe, is_outage
from monitor.core.errors import FinpulseError
from monitor.core.settings import Settings
from monitor.stream.dead_letter import DeadLetterError
from monitor.stream.health import HealthReporter, HealthStatus
from monitor.stream.isolate import ScorerUnavailable

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
T = TypeVar("T")

OUTAGES: dict[type[BaseException], tuple[str, HealthStatus]] = {
    DatabaseUnavailable: ("database", "database_retrying"),
    DeadLetterError: ("broker (dead-letter topic)", "broker_reconnecting"),
    ScorerUnavailable: ("model", "model_refused"),
}
"""Errors that mean "a dependency is away, retry the same step later": what is away, and the health state."""


class OutageDeadline(FinpulseError):
    """An outage lasted longer than ``FINPULSE_OUTAGE_DEADLINE_S``; the process should exit non-zero."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class Backoff:
    """One outage episode: :meth:`failed` after each failed attempt, :meth:`recovered` after the first success."""

    def __init__(self, what: str, deadline_s: float, max_backoff_s: float) -> None:
        self.what, self.deadline_s, self.max_backoff_s = what, deadline_s, max_backoff_s
        self.started: float | None = None
        self.attempts = 0

    @property
    def active(self) -> bool:
        return self.started is not None

    def failed(self, reason: str) -> float:
        """Record a failed attempt; return how long to wait before the next. Raises :class:`OutageDeadline`."""
        now = time.monotonic()
        if self.started is None:
            self.started = now
        self.attempts += 1
        elapsed = now - self.started
        if elapsed >= self.deadline_s:
            raise OutageDeadline(f"{self.what} unavailable for {elapsed:.0f} s ({self.attempts} attempts; last: "
                                 f"{reason}); giving up after FINPULSE_OUTAGE_DEADLINE_S={self.deadline_s:g}. "
                                 "Nothing is lost: uncommitted messages are re-read on restart")
        ceiling = min(self.max_backoff_s, FIRST_BACKOFF_S * 2 ** min(self.attempts - 1, 16))
        wait = min(random.uniform(ceiling / 2, ceiling), max(0.0, self.deadline_s - elapsed))  # nosec B311 # jitter
        log.warning("%s unavailable (%s); attempt %d, retrying in %.1f s (gives up after %.0f s more)",
                    self.what, reason, self.attempts, wait, self.deadline_s - elapsed)
        return wait

    def recovered(self) -> None:
        if self.started is not None:
            log.warning("%s back after %.1f s and %d failed attempts; resuming", self.what,
                        time.monotonic() - self.started, self.attempts)
        self.started, self.attempts = None, 0


def retry(step: Callable[[], T], outages: Mapping[type[BaseException], tuple[str, HealthStatus]], *,
          settings: Settings, health: HealthReporter, wait: Callable[[float], None],
          on_recovered: Callable[[], None]) -> T:
    """Run ``step`` until it succeeds; an error in ``outages`` (kind -> what, health status) is waited out."""
    backoff: Backoff | None = None
    while True:
        try:
            value = step()
        except tuple(outages) as error:
            what, status = next(v for kind, v in outages.items() if isinstance(error, kind))
            backoff = backoff or Backoff(what, settings.outage_deadline_s, settings.retry_max_backoff_s)
            health.set(status, str(error))
            wait(backoff.failed(str(error)))
            continue
        if backoff is not None:
            backoff.recovered()
            on_recovered()
            health.ok()
        return value


def wait_at_start(step: Callable[[], T], down: Callable[[Exception], str | None], what: str,
                  status: HealthStatus, *, settings: Settings, health: HealthReporter) -> T:
    """Start-up: run ``step`` until it succeeds while ``down(error)`` names a reason (one line per attempt);
    any other error is raised at once."""
    backoff = Backoff(what, settings.outage_deadline_s, settings.retry_max_backoff_s)
    while True:
        try:
            value = step()
        except Exception as error:
            reason = down(error)
            if reason is None:
                raise
            health.set(status, reason)
            time.sleep(backoff.failed(f"{reason}; waiting for it at start-up"))
            continue
        backoff.recovered()
        return value


def database_down(error: Exception) -> str | None:
    """The reason when ``error`` says the database is unreachable (not when its schema is behind)."""
    return describe(error) if isinstance(error, SQLAlchemyError) and is_outage(error) else None
