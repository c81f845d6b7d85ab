"""Delivers the notification outbox through Apprise, off the scoring path.

Why an outbox in the database rather than an in-memory queue: the alert evaluator writes the ``notification``
rows in the same transaction as the alert state, so a crash between "alert fired" and "message sent" loses
nothing, and a dead endpoint only ever costs this background thread time, never the consumer's. The
:class:`Notifier` thread claims due rows, sends, and records ``sent``/``failed``, attempts, the last error and
timestamps. Retries back off exponentially: ``notify_backoff_s * 2**(attempt-1)``, up to ``notify_max_attempts``.

Exactly one delivery per row, across consumer processes (:mod:`monitor.alerts.outbox` holds the SQL): a claim
leases the row for ``notify_lease_s`` under a fresh fencing token (uuid4 in ``lease_token``); while the sends run,
a small thread renews the lease every lease/3 seconds, so a slow but alive sender keeps its rows; right before
sending, the claim is re-checked (and renewed); and the outcome is written only where ``id`` and the token still
match. A sender that died stops renewing, so its rows are taken over once the lease runs out; if it was only
stalled, its late renewal or outcome is refused (a warning naming the notification id) and never overwrites the
new owner's. The one gap left: a send whose renewals cannot reach the database for a whole lease (a database
outage, a frozen process) may be sent again by the next owner, since an HTTP endpoint cannot check the token.

Channel URLs (which often embed tokens) never enter the database or the logs: a channel *name* is resolved at
send time from ``FINPULSE_NOTIFY_<NAME>`` (one or more URLs, comma separated) or a ``name=url`` line of
``notify_secrets_file``; the channel ``default`` is ``notify_urls`` plus the secrets file's unnamed lines.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from datetime import timedelta
from pathlib import Path

import apprise
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from monitor.alerts import outbox
from monitor.core.db import session_scope
from monitor.core.settings import Settings
from schemas.alerts import Notification
from schemas.types import utcnow

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "default"
_NAMED_LINE_RE = re.compile(r"^([a-z0-9][a-z0-9_\-]*)\s*=\s*(\S+://\S*)$", re.IGNORECASE)
_CREDENTIALS_RE = re.compile(r"(\w+://)[^\s/@]+@")
_QUERY_RE = re.compile(r"(\w+://[^\s?]+)\?\S*")
_KIND_TYPE = {"firing": apprise.NotifyType.FAILURE, "reminder": apprise.NotifyType.WARNING,
              "resolved": apprise.NotifyType.SUCCESS}


def _load_plugins() -> None:
    # Apprise loads its plugins on first use; its e-mail plugin imports the stdlib's deprecated ``imghdr``
    # (Python 3.11/3.12). Load them once here, quietly, instead of warning inside the notifier thread.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        apprise.Apprise.instantiate("json://localhost")


_load_plugins()
# Apprise's own log lines can name hosts, paths and payloads; its warnings reach ``last_error`` and our log
# through :func:`mask` instead.
logging.getLogger("apprise").propagate = False


def mask(text: str, secrets: list[str] | None = None) -> str:
    """Hide credentials and query strings of any URL in ``text`` (and any literal secret given)."""
    for secret in secrets or []:
        if secret:
            text = text.replace(secret, "***")
    return _QUERY_RE.sub(r"\1?***", _CREDENTIALS_RE.sub(r"\1***@", text))


def _secrets_file_lines(settings: Settings) -> list[str]:
    path: Path | None = settings.notify_secrets_file
    if path is None or not path.exists():
        return []
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def channel_urls(name: str, settings: Settings) -> list[str]:
    """The Apprise URLs of channel ``name`` (empty when it is not configured)."""
    urls: list[str] = []
    if name == DEFAULT_CHANNEL:
        urls += [url.get_secret_value() for url in settings.notify_urls]
    env = os.environ.get(f"FINPULSE_NOTIFY_{re.sub(r'[^A-Za-z0-9]', '_', name).upper()}", "")
    urls += [part for part in re.split(r"[,\s]+", env) if part]
    for line in _secrets_file_lines(settings):
        named = _NAMED_LINE_RE.match(line)
        if named and named.group(1).lower() == name:
            urls.append(named.group(2))
        elif not named and name == DEFAULT_CHANNEL and "://" in line:
            urls.append(line)
    return urls


def default_channel_configured(settings: Settings) -> bool:
    return bool(channel_urls(DEFAULT_CHANNEL, settings))


def send(urls: list[str], title: str, body: str, kind: str) -> str | None:
    """Send one message to every URL; None on success, else a masked one-line error."""
    if not urls:
        return "channel has no URL configured"
    client = apprise.Apprise()
    for url in urls:
        if not client.add(url):
            return f"not a valid Apprise URL: {mask(url, [url])}"
    try:
        result = client.notify(title=title, body=body, notify_type=_KIND_TYPE.get(kind, apprise.NotifyType.INFO))
    except Exception as error:  # noqa: BLE001 - a plugin bug must not kill the notifier thread
        return mask(f"{type(error).__name__}: {error}", urls)
    if result:
        return None
    lines = [str(entry.message) for entry in result.logs() if str(entry.level) in ("WARNING", "ERROR", "CRITICAL")]
    return mask(" | ".join(lines)[-900:] or "delivery failed", urls)


class Notifier:
    """Drains the outbox on a daemon thread that runs only while there is work.

    ``wake()`` after committing new rows starts the thread if needed; it exits once no row is pending or being
    sent (so an idle consumer, or a test, holds no thread), and ``close()`` stops it for good.
    """

    def __init__(self, engine: Engine, settings: Settings, poll_s: float = 1.0, batch: int = 20) -> None:
        self.engine, self.settings, self.poll_s, self.batch = engine, settings, poll_s, batch
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False

    def wake(self) -> None:
        with self._lock:
            self._wake.set()
            if self._thread is None and not self._stop.is_set() and not self._closing:
                self._thread = threading.Thread(target=self._run, name="finpulse-notifier", daemon=True)
                self._thread.start()

    def resume(self) -> None:
        """Start draining if rows were left pending (say, by a crash); a cheap indexed count."""
        if self.outstanding() > 0:
            self.wake()

    def close(self, timeout: float = 5.0) -> None:
        """Give due deliveries (retries with short backoff included) up to ``timeout`` seconds, then stop.

        Whatever is still pending stays in the outbox and the next process's :meth:`resume` delivers it.
        """
        with self._lock:
            self._closing = True
            self._wake.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            self._stop.set()
            self._wake.set()
            thread = self._thread
        if thread is not None:
            thread.join(2.0)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def outstanding(self) -> int:
        with session_scope(self.engine) as session:
            return int(session.execute(
                select(func.count()).select_from(Notification)
                .where(col(Notification.status).in_(("pending", "sending")))
            ).scalar_one())

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self.drain_once() >= self.batch:
                    continue
                remaining, failures = self.outstanding(), 0
            except Exception:  # a database hiccup must not end delivery for good
                failures += 1
                log.exception("notifier: draining the outbox failed (%d in a row)", failures)
                remaining = 0 if failures >= 5 else 1  # give up until the next wake-up
            if remaining == 0:
                with self._lock:
                    if not self._wake.is_set():  # no row was committed since we looked: nothing left to do
                        self._thread = None
                        return
                continue
            self._wake.wait(self.poll_s)
        with self._lock:
            self._thread = None

    def drain_once(self) -> int:
        """Send every due notification once; returns how many were claimed."""
        lease_s = self.settings.notify_lease_s
        claims = outbox.claim_due(self.engine, utcnow(), lease_s, self.batch, self.settings.notify_max_attempts)
        if claims:
            with outbox.LeaseKeeper(self.engine, lease_s, claims) as keeper:
                for claim in claims:
                    self.deliver(claim, keeper)
        return len(claims)

    def deliver(self, claim: outbox.Claim, keeper: outbox.LeaseKeeper) -> None:
        """Send one claimed row, unless its claim was taken over meanwhile, and record the outcome."""
        row = claim.row
        if not keeper.confirm(claim):
            log.warning("notification %s: claim taken over by another sender before sending; not sent here", row.id)
            return
        urls = channel_urls(row.channel, self.settings)
        error = send(urls, row.title, row.body, row.kind)
        if error and not urls:
            error = (f"channel '{row.channel}' is not configured: set FINPULSE_NOTIFY_"
                     f"{re.sub(r'[^A-Za-z0-9]', '_', row.channel).upper()} or add '{row.channel}=URL' "
                     "to the notify secrets file")
        keeper.release(claim)
        self.record(claim, error)

    def record(self, claim: outbox.Claim, error: str | None) -> bool:
        """Record the outcome of ``claim``; False (and a warning) when another sender holds the row now."""
        row, attempt, now = claim.row, claim.attempt, utcnow()
        values: dict[str, object] = {"attempts": attempt, "updated_at": now, "last_error": error}
        if error is None:
            values.update(status="sent", sent_at=now)
        elif attempt >= self.settings.notify_max_attempts:
            values.update(status="failed")
        else:
            delay = self.settings.notify_backoff_s * 2 ** (attempt - 1)
            values.update(status="pending", next_attempt_at=now + timedelta(seconds=delay))
        if not outbox.finish(self.engine, claim, values):
            log.warning("notification %s: its lease was taken over by another sender; this sender's outcome (%s, "
                        "attempt %d) is not recorded", row.id, values["status"], attempt)
            return False
        if error is None:
            log.info("notification %s (%s, alert %s) sent to channel %s", row.id, row.kind, row.alert_id, row.channel)
        elif values["status"] == "failed":
            log.warning("notification %s to channel %s failed for good after %d attempts: %s",
                        row.id, row.channel, attempt, error)
        else:
            log.info("notification %s to channel %s failed (attempt %d, retry in %.1f s): %s",
                     row.id, row.channel, attempt, self.settings.notify_backoff_s * 2 ** (attempt - 1), error)
        return True
