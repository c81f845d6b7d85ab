"""A notification endpoint slower than the outbox lease: one delivery per notification, on SQLite and PostgreSQL.

Real HTTP (a local endpoint that answers each POST only after ``delay_s``, through Apprise), real databases, a
lease of 1 s. Two :class:`Notifier` instances, each with its own engine as two consumer processes would have,
drain the same outbox; and a sender that claimed rows and then stalled ("died") has them taken over, and its late
outcome is refused by the fencing token.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.alerts import outbox
from monitor.alerts.notify import Notifier
from monitor.core import db
from monitor.core.settings import Settings, load_settings
from schemas.alerts import Notification
from schemas.types import utcnow
from tests.alert_helpers import WebhookReceiver
from tests.stream_helpers import wait_for

LEASE_S = 1.0
SECRET_BODY = "body-marker-7f3a"  # never in a log line


class SlowEndpoint(WebhookReceiver):
    """The test receiver, answering each POST only after ``delay_s`` (longer than the lease)."""

    def url(self, path: str) -> str:
        return f"{super().url(path)}?rto=30"  # rto: Apprise's read timeout, above the delay

    def titles(self) -> Counter[str]:
        return Counter(str(payload["title"]) for _, payload in self.posts())


def settings_for(db_url: str) -> Settings:
    return load_settings(database_url=db_url, notify_urls=[], notify_secrets_file=None, notify_lease_s=LEASE_S,
                         notify_backoff_s=0.05, notify_max_attempts=3)


def queue(engine: Engine, count: int) -> list[int]:
    """``count`` pending notifications to channel ``slow``, as the alert evaluator writes them."""
    rows = [Notification(alert_id=100 + i, channel="slow", kind="firing", title=f"[FIRING] alert {i}",
                         body=f"evidence {i} {SECRET_BODY}") for i in range(count)]
    with db.session_scope(engine) as session:
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows if row.id is not None]


def stored(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.exec(select(Notification).order_by(col(Notification.id))).all())


@pytest.mark.slow
def test_two_senders_slower_than_the_lease_deliver_each_notification_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.alerts")
    settings = settings_for(db_url)
    engines = [db.make_engine(db_url), db.make_engine(db_url)]
    with SlowEndpoint(delay_s=2.5) as endpoint:  # each send outlasts two leases
        monkeypatch.setenv("FINPULSE_NOTIFY_SLOW", endpoint.url("slow"))
        ids = queue(engines[0], 3)
        notifiers = [Notifier(engine, settings, poll_s=0.1, batch=1) for engine in engines]
        for notifier in notifiers:
            notifier.wake()
        wait_for(lambda: not any(n.running for n in notifiers), 60, "both notifiers to drain the outbox")
        for notifier in notifiers:
            notifier.close()
        titles, durations = endpoint.titles(), list(endpoint.durations)

    assert titles == Counter({f"[FIRING] alert {i}": 1 for i in range(3)}), titles  # exactly one delivery each
    assert min(durations) > 2 * LEASE_S
    assert endpoint.most_in_flight == 2  # both senders were sending at the same time (each sends one at a time)
    rows = stored(engines[0])
    assert [row.id for row in rows] == ids
    # attempts == 1: no lease ran out mid-send, nobody took a row over; the lease ended with the claim.
    assert [(row.status, row.attempts, row.lease_token) for row in rows] == [("sent", 1, None)] * 3
    assert sum("sent to channel slow" in record.getMessage() for record in caplog.records) == 3
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text
    for engine in engines:
        engine.dispose()


@pytest.mark.slow
def test_a_dead_senders_claim_is_taken_over_once_and_its_late_result_is_refused(
    db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.alerts")
    settings = settings_for(db_url)
    dead_engine, live_engine = db.make_engine(db_url), db.make_engine(db_url)
    with SlowEndpoint(delay_s=1.5) as endpoint:
        monkeypatch.setenv("FINPULSE_NOTIFY_SLOW", endpoint.url("slow"))
        (row_id,) = queue(dead_engine, 1)
        # The dead sender: it claims the row (status 'sending', its token), then never renews, sends or records.
        (stale,) = outbox.claim_due(dead_engine, utcnow(), LEASE_S, limit=10)
        (left,) = stored(live_engine)
        assert (left.status, left.attempts, left.lease_token) == ("sending", 1, stale.token)
        live = Notifier(live_engine, settings, poll_s=0.1)
        assert live.drain_once() == 0  # the lease still holds: nobody else may send the row
        wait_for(lambda: stored(live_engine)[0].next_attempt_at <= utcnow(), 10, "the dead lease to expire")

        assert live.drain_once() == 1  # taken over under a new token, sent once (through renewals: 1.5 s > lease)
        (taken,) = stored(live_engine)
        assert (taken.status, taken.attempts, taken.lease_token, taken.last_error) == ("sent", 2, None, None)

        # The stale sender comes back: its renewal, its pre-send check and its outcome are all refused.
        dead = Notifier(dead_engine, settings)
        assert not outbox.renew(dead_engine, stale, LEASE_S)
        with outbox.LeaseKeeper(dead_engine, LEASE_S, [stale]) as keeper:
            dead.deliver(stale, keeper)  # does not send
        assert not dead.record(stale, None)
        assert not dead.record(stale, "ConnectionError: endpoint went away")
        titles = endpoint.titles()

    assert titles == Counter({"[FIRING] alert 0": 1})
    (final,) = stored(live_engine)
    assert (final.status, final.attempts, final.lease_token, final.last_error, final.sent_at) == (
        "sent", 2, None, None, taken.sent_at)  # the new owner's outcome stands
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refusals) == 3 and all(f"notification {row_id}:" in message for message in refusals), refusals
    assert sum("not recorded" in message for message in refusals) == 2
    assert SECRET_BODY not in caplog.text and str(endpoint.port) not in caplog.text and "json://" not in caplog.text
    dead_engine.dispose()
    live_engine.dispose()


def test_a_renewal_that_lands_between_a_claimers_read_and_its_claim_wins(db_url: str) -> None:
    holder_engine, claimer_engine = db.make_engine(db_url), db.make_engine(db_url)
    queue(holder_engine, 1)
    # The holder's claim, with a lease so short that it has run out when the claimer looks: the row is due again.
    (held,) = outbox.claim_due(holder_engine, utcnow(), 0.01, limit=1)
    time.sleep(0.05)
    renewed: list[bool] = []

    def renew_first(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        # Injected race: the claimer has read the row as due; the holder's (late) renewal commits before the claim.
        if statement.lstrip().upper().startswith("UPDATE") and not renewed:
            renewed.append(outbox.renew(holder_engine, held, LEASE_S))

    event.listen(claimer_engine, "before_cursor_execute", renew_first)
    assert outbox.claim_due(claimer_engine, utcnow(), LEASE_S, limit=1) == []  # the renewed lease is not taken over
    assert renewed == [True]
    (row,) = stored(claimer_engine)
    assert (row.status, row.attempts, row.lease_token) == ("sending", 1, held.token)
    assert outbox.finish(holder_engine, held, {"status": "sent", "sent_at": utcnow()})  # the holder still owns it
    holder_engine.dispose()
    claimer_engine.dispose()


def test_a_row_whose_senders_keep_dying_is_failed_after_the_attempt_limit(db_url: str) -> None:
    engine = db.make_engine(db_url)
    queue(engine, 1)
    for _ in range(2):  # two senders claim the row and die mid-send (their leases run out)
        assert len(outbox.claim_due(engine, utcnow(), 0.01, limit=1, max_attempts=2)) == 1
        time.sleep(0.05)
    assert outbox.claim_due(engine, utcnow(), LEASE_S, limit=1, max_attempts=2) == []  # not a third time
    (row,) = stored(engine)
    assert (row.status, row.attempts, row.lease_token) == ("failed", 2, None)
    assert row.last_error is not None and "died mid-send 2 times" in row.last_error
    engine.dispose()
