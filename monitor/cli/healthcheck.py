"""Container health probe: ``python -m monitor.cli.healthcheck [auto|dashboard|worker]``.

Docker runs it inside the container (the image's HEALTHCHECK and docker/compose.yaml). Exit 0 means healthy and
1 unhealthy, as Docker expects; the one line printed lands in ``docker inspect``'s health log.

- ``dashboard``: Streamlit answers ``ok`` on ``/_stcore/health`` at FINPULSE_DASHBOARD_PORT.
- ``worker`` (consumer, scheduler): a Kafka bootstrap server accepts connections, the database answers and is
  migrated to this code's head revision (a consumer on an old schema would fail on its first write), and no
  consumer of this host reports an outage in its health file (FINPULSE_HEALTH_DIR, see
  :mod:`monitor.stream.health`): ``database_retrying`` or ``broker_reconnecting`` is unhealthy, with the detail
  and since when; ``model_refused`` stays healthy, the line saying ``degraded: serving <version> because ...``.
  A file whose process is gone is stale and ignored. Every failure is named, e.g. an unreachable database and
  the consumer retrying it.
- ``auto``: ``dashboard`` when the container's main process is the dashboard, else ``worker``.

It imports neither torch nor the CLI, so a probe costs a fraction of a second every interval. ``finpulse health``
(:mod:`monitor.cli.health`) shows the same checks one per line.
"""

from __future__ import annotations

import logging
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, select

from monitor.core import db
from monitor.core.errors import FinpulseError
from monitor.core.settings import Settings, load_settings, mask_url, safe_database_url
from monitor.stream.health import HealthRecord, read_records
from schemas.consumers import ConsumerHeartbeat

log = logging.getLogger(__name__)

Role = Literal["dashboard", "worker"]
ROLES: dict[str, Role] = {"dashboard": "dashboard", "worker": "worker"}
TIMEOUT_S = 5.0


class Unhealthy(Exception):
    """The probe failed; the message says what and where."""


def role_from_cmdline(cmdline: str) -> Role:
    """``dashboard`` when the main process serves the dashboard (``finpulse dashboard`` or its streamlit exec)."""
    return "dashboard" if "dashboard" in cmdline else "worker"


def main_process_cmdline() -> str:
    """PID 1's command line (tini's, which includes the command it runs), NUL separators as spaces."""
    try:
        return Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def check_dashboard(port: int, host: str = "127.0.0.1") -> str:
    url = f"http://{host}:{port}/_stcore/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # nosec B310 # the http:// URL above
            body = response.read(64).decode("utf-8", "replace").strip()
    except (urllib.error.URLError, OSError) as error:
        raise Unhealthy(f"dashboard health {url} failed: {error}") from None
    if body != "ok":
        raise Unhealthy(f"dashboard health {url} answered {body!r}, expected 'ok'")
    return f"dashboard {url} ok"


def check_kafka(bootstrap: str) -> str:
    """One reachable bootstrap server is enough: the client discovers the rest of the cluster from it."""
    failures = []
    for server in (s.strip() for s in bootstrap.split(",")):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S):
                return f"kafka {server} reachable"
        except OSError as error:
            failures.append(f"{server}: {error}")
    raise Unhealthy(f"no Kafka bootstrap server reachable ({'; '.join(failures)})")


def _engine(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return db.make_engine(url)
    return db.make_engine(url, connect_args={"connect_timeout": round(TIMEOUT_S)})  # a probe must not hang


def check_database(url: str) -> str:
    safe_url = safe_database_url(url)  # password hidden, in the query string too
    engine = _engine(url)
    try:
        current = db.current_revision(engine)
    except Exception as error:  # noqa: BLE001 - any driver error means "not healthy"; say which
        first = mask_url((str(error).splitlines() or [""])[0])  # a driver's text may quote a DSN
        raise Unhealthy(f"database {safe_url} unreachable: {type(error).__name__}: {first}") from None
    finally:
        engine.dispose()
    head = db.head_revision()
    if current != head:
        raise Unhealthy(f"database {safe_url} at migration {current or 'none'}, code needs {head}; "
                        "run `finpulse db upgrade`")
    return f"database at {current}"


def serving_versions(url: str, members: list[str]) -> dict[str, str | None]:
    """The model version each consumer last reported in its heartbeat row (what it serves); {} on any error."""
    engine = _engine(url)
    try:
        with Session(engine) as session:
            rows = session.exec(select(ConsumerHeartbeat).where(col(ConsumerHeartbeat.member).in_(members))).all()
            return {row.member: row.model_version for row in rows}
    except Exception:  # the version is a nicety of the line; the database check reports faults
        log.debug("could not read the heartbeat rows", exc_info=True)
        return {}
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class Check:
    """One part of the verdict: ``ok`` and ``degraded`` keep it healthy, ``unhealthy`` fails it, ``ignored``
    (a stale health file) does not count."""

    name: str  # kafka, database, or the consumer's host:pid
    state: Literal["ok", "degraded", "unhealthy", "ignored"]
    text: str
    record: HealthRecord | None = None  # a consumer's health file


def consumer_check(record: HealthRecord, version: str | None, now: datetime | None = None) -> Check:
    where = record.liveness()
    if where == "gone":
        return Check(record.member, "ignored", f"consumer {record.member}: stale file, process {record.pid} is "
                                               "gone (ignored)", record)
    if where == "elsewhere":
        return Check(record.member, "ignored", f"consumer {record.member}: written on host {record.host}, whose "
                                               "processes cannot be checked from here (ignored)", record)
    if record.unhealthy:
        return Check(record.member, "unhealthy", record.describe(now), record)
    if record.degraded:
        since = f"{record.since:%Y-%m-%d %H:%M:%S}Z"
        return Check(record.member, "degraded",
                     f"degraded: serving {version or 'the last good version'} because "
                     f"{record.detail or 'the champion was refused'} (consumer {record.member}, since {since})", record)
    return Check(record.member, "ok", f"consumer {record.member} {record.status}", record)


def worker_checks(settings: Settings) -> list[Check]:
    """Broker reachable, database migrated, and the state of each consumer of this host (its health file)."""
    checks = []
    for name, run, target in (("kafka", check_kafka, settings.kafka_bootstrap),
                              ("database", check_database, settings.database_url)):
        try:
            checks.append(Check(name, "ok", run(target)))
        except Unhealthy as error:
            checks.append(Check(name, "unhealthy", str(error)))
    records = read_records(settings.health_dir)
    refused = [r.member for r in records if r.degraded]
    versions = serving_versions(settings.database_url, refused) if refused and checks[1].state == "ok" else {}
    checks.extend(consumer_check(record, versions.get(record.member)) for record in records)
    return checks


def verdict(checks: list[Check]) -> tuple[int, str]:
    """(exit code, the one line): every failure when unhealthy, else the healthy parts then the degraded ones."""
    failures = [check.text for check in checks if check.state == "unhealthy"]
    if failures:
        return 1, "unhealthy: " + "; ".join(failures)
    shown = [c.text for c in checks if c.state == "ok"] + [c.text for c in checks if c.state == "degraded"]
    return 0, "healthy: " + "; ".join(shown)


def probe(role: Role, settings: Settings) -> str:
    """Run the checks of ``role``; return the healthy line (after ``healthy: ``) or raise :class:`Unhealthy`."""
    if role == "dashboard":
        return check_dashboard(settings.dashboard_port)
    code, line = verdict(worker_checks(settings))
    if code:
        raise Unhealthy(line.removeprefix("unhealthy: "))
    return line.removeprefix("healthy: ")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    requested = args[0] if args else "auto"
    role: Role
    if requested == "auto":
        role = role_from_cmdline(main_process_cmdline())
    elif requested in ROLES:
        role = ROLES[requested]
    else:
        print(f"unhealthy: unknown role {requested!r}; expected auto, dashboard or worker")
        return 1
    try:
        print(f"healthy: {probe(role, load_settings())}")
    except (Unhealthy, FinpulseError) as error:
        print(f"unhealthy: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
