"""Each consumer's health state in a small local file: what ``finpulse health`` and the container probe read.

A file, not a table, because the state that matters most, ``database_retrying``, is reported exactly while the
database cannot be written. Each consumer process writes ``FINPULSE_HEALTH_DIR/consumer-<host>_<pid>.json``
atomically (temp file + ``os.replace``, so a reader never sees half a file) when its state changes, and again
every few seconds while it stays the same (``updated_at``); a clean shutdown removes it. A crashed consumer's file
is recognised as stale by its process id (gone, or reused by another process) and ignored by the readers; the
next reporter on the same host removes it.

States: ``starting`` (model loading, first poll), ``ok``, ``database_retrying`` and ``broker_reconnecting``
(riding out an outage, unhealthy), ``model_refused`` (the champion failed to load; serving the last good version:
degraded but healthy). The heartbeat row in the database carries the same state for the dashboard.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from monitor.core.settings import Settings
from schemas.types import utcnow

log = logging.getLogger(__name__)

HealthStatus = Literal["ok", "starting", "database_retrying", "broker_reconnecting", "model_refused"]
STATUSES: tuple[str, ...] = get_args(HealthStatus)
UNHEALTHY: frozenset[str] = frozenset({"database_retrying", "broker_reconnecting"})  # the probe exits 1
DEGRADED: frozenset[str] = frozenset({"model_refused"})  # the probe exits 0 and says why
REFRESH_S = 5.0  # an unchanged state is rewritten (updated_at) at most this often
DETAIL_MAX_CHARS = 500  # as the heartbeat row's column
FILE_GLOB = "consumer-*.json"

Liveness = Literal["live", "gone", "elsewhere"]


def safe_member(member: str) -> str:
    """``host:pid`` as a file-name part: anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", member)


def health_file(health_dir: Path, member: str) -> Path:
    return health_dir / f"consumer-{safe_member(member)}.json"


def clean_detail(detail: str | None) -> str | None:
    """One line of at most DETAIL_MAX_CHARS, without NULs (PostgreSQL text cannot hold them)."""
    if detail is None:
        return None
    line = " ".join(detail.replace("\0", "").split())
    return line[:DETAIL_MAX_CHARS - 1] + "…" if len(line) > DETAIL_MAX_CHARS else line


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, Linux ``/proc``), to tell a reused pid; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the command name before ")" may hold spaces
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: int, started: int | None = None) -> bool:
    """``os.kill(pid, 0)`` succeeds, and the process is the one that wrote the file (same start time)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there; assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return False
    if started is not None:
        now = process_start_ticks(pid)
        if now is not None and now != started:
            return False  # the pid was reused (a container restart starts counting pids again)
    return True


@dataclass(frozen=True, slots=True)
class HealthRecord:
    """One consumer's health file as read back."""

    path: Path
    member: str
    host: str
    pid: int
    pid_started: int | None
    status: str
    detail: str | None
    since: datetime
    updated_at: datetime
    group: str
    topic: str

    def liveness(self, host: str | None = None) -> Liveness:
        """``live``; ``gone`` (the process died: stale, ignored); ``elsewhere`` (written on another host, whose
        processes cannot be checked from here: ignored too)."""
        if self.host != (host or socket.gethostname()):
            return "elsewhere"
        return "live" if process_alive(self.pid, self.pid_started) else "gone"

    @property
    def unhealthy(self) -> bool:
        return self.status in UNHEALTHY

    @property
    def degraded(self) -> bool:
        return self.status in DEGRADED

    def describe(self, now: datetime | None = None) -> str:
        """``consumer host:1 database_retrying since 2025-01-02 10:00:00Z (2 min): <detail>``."""
        age = ((now or utcnow()) - self.since).total_seconds()
        text = f"consumer {self.member} {self.status} since {self.since:%Y-%m-%d %H:%M:%S}Z ({span(age)})"
        return f"{text}: {self.detail}" if self.detail else text


def span(seconds: float) -> str:
    """45 -> ``45 s``, 150 -> ``2 min``, 7500 -> ``2 h 5 min``."""
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def read_record(path: Path) -> HealthRecord:
    """Parse one health file; ValueError/OSError when it is unreadable."""
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        return HealthRecord(
            path=path, member=str(data["member"]), host=str(data["host"]), pid=int(data["pid"]),
            pid_started=None if data.get("pid_started") is None else int(data["pid_started"]),
            status=str(data["status"]), detail=data.get("detail"), since=_aware(data["since"]),
            updated_at=_aware(data["updated_at"]), group=str(data.get("group", "")),
            topic=str(data.get("topic", "")))
    except (KeyError, TypeError) as error:
        raise ValueError(f"missing or malformed field {error}") from None


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_records(health_dir: Path) -> list[HealthRecord]:
    """Every readable consumer health file in ``health_dir`` (none when it does not exist), by member."""
    records = []
    for path in sorted(health_dir.glob(FILE_GLOB)):
        try:
            records.append(read_record(path))
        except (OSError, ValueError) as error:  # removed meanwhile, or not ours
            log.debug("skipping health file %s: %s", path, error)
    return records


class HealthReporter:
    """This consumer process's health file. :meth:`set` is cheap: call it as often as the state is known."""

    def __init__(self, settings: Settings, member: str) -> None:
        self.health_dir = settings.health_dir
        self.member = member
        self.path = health_file(self.health_dir, member)
        self._group = settings.kafka_group_id
        self._topic = settings.kafka_topic
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._pid_started = process_start_ticks(self._pid)
        self._status: HealthStatus = "starting"
        self._detail: str | None = None
        self._since = utcnow()
        self._written_at: float | None = None  # monotonic time of the last successful write
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self._prune()
        with self._lock:
            self._write()

    @property
    def status(self) -> HealthStatus:
        return self._status

    @property
    def detail(self) -> str | None:
        return self._detail

    def ok(self) -> None:
        self.set("ok")

    def set(self, status: HealthStatus, detail: str | None = None) -> None:
        """Record the state; the file is written when it changed, or when the last write is REFRESH_S old."""
        if status not in STATUSES:
            raise ValueError(f"unknown health status {status!r}; expected one of {', '.join(STATUSES)}")
        detail = clean_detail(detail)
        with self._lock:
            changed = (status, detail) != (self._status, self._detail)
            if status != self._status:
                self._since = utcnow()
            self._status, self._detail = status, detail
            due = self._written_at is None or time.monotonic() - self._written_at >= REFRESH_S
            if changed or due:
                self._write()

    def close(self) -> None:
        """Remove this process's file (a clean shutdown leaves nothing for the probe to read)."""
        with self._lock:
            self._written_at = None
            try:
                self.path.unlink(missing_ok=True)
            except OSError as error:
                log.warning("could not remove the health file %s: %s", self.path, error)

    def _payload(self) -> dict[str, object]:
        return {"member": self.member, "host": self._host, "pid": self._pid, "pid_started": self._pid_started,
                "status": self._status, "detail": self._detail, "since": self._since.isoformat(),
                "updated_at": utcnow().isoformat(), "group": self._group, "topic": self._topic}

    def _write(self) -> None:
        """Atomic replace; a failure is logged (once per distinct error) and never raised: health reporting must
        not stop the consumer."""
        temp: str | None = None
        try:
            self.health_dir.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(prefix=".consumer-", suffix=".tmp", dir=self.health_dir)
            if hasattr(os, "fchmod"):
                os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide it from an operator's `finpulse health`
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(self._payload(), out)
            os.replace(temp, self.path)
            temp = None
            self._written_at = time.monotonic()
            self._last_error = None
        except OSError as error:
            self._written_at = time.monotonic()  # retry at the refresh interval, not on every call
            if str(error) != self._last_error:
                self._last_error = str(error)
                log.warning("could not write the health file %s (finpulse health cannot see this consumer): %s",
                            self.path, error)
        finally:
            if temp is not None:
                Path(temp).unlink(missing_ok=True)

    def _prune(self) -> None:
        """Remove the files of this host's consumers that died without cleaning up (their pids are gone)."""
        for record in read_records(self.health_dir):
            if record.path != self.path and record.liveness(self._host) == "gone":
                try:
                    record.path.unlink(missing_ok=True)
                except OSError as error:
                    log.debug("could not remove the stale health file %s: %s", record.path, error)
