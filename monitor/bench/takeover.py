"""``finpulse bench takeover``: how long a kill -9 of ``finpulse consume`` stops its partitions, by group setting.

Arms, measured in the same run and alternating trial by trial: dynamic membership (no
``FINPULSE_KAFKA_GROUP_INSTANCE_ID``) and static membership (KIP-345, one instance id per member) at the default
10 s session, and dynamic membership at a short session (3 s; the heartbeat is a sixth of it). Scenarios:

* ``restart``: one member is killed with SIGKILL and started again at once with the same settings;
* ``survivor``: two members; one is killed and stays dead, and the other has to take its partitions over.

Each trial gets a fresh topic, consumer group and SQLite file, a producer publishing a steady stream round-robin
over the partitions, and real ``finpulse consume`` processes (logs in ``<workdir>/<topic>-m<N>.log``). The kill
comes once every partition is flowing; the clock runs from the kill until the first row of one of the dead
member's partitions is stored (and until every one of them has a new row), read from the database every 50 ms.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from finetune.device import cpu_flags
from monitor.bench.data import find_source, load_messages, make_producer
from monitor.bench.model import resolve_model
from monitor.bench.run import cpu_model
from monitor.core import db
from monitor.core.cpus import usable_cores
from monitor.core.errors import FinpulseError
from monitor.core.settings import get_settings
from monitor.stream.broker import EmbeddedBroker, create_topics, tansu_binary
from monitor.stream.replay import message_key, message_value
from schemas.consumers import ConsumerHeartbeat
from schemas.news import News, NewsIn

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("restart", "survivor")
ARMS = ("dynamic", "static", "short")
STEADY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Arm:
    name: str
    session_ms: int
    static: bool

    @property
    def label(self) -> str:
        return f"{'static' if self.static else 'dynamic'}, session {self.session_ms / 1000:g} s"


@dataclass
class TakeoverOptions:
    model: Path | None = None
    bootstrap: str | None = None  # None: an embedded tansu broker
    scenarios: tuple[str, ...] = SCENARIOS
    arms: tuple[str, ...] = ARMS
    session_ms: int = 10_000
    short_session_ms: int = 3_000
    rate: float = 40.0  # messages/s offered during a trial
    partitions: int = 4
    rounds: int = 1
    timeout_s: float | None = None  # a slower takeover is reported as missing; default 20 s + 2 sessions
    workdir: Path | None = None
    keep: bool = False


def publish(bootstrap: str, topic: str, templates: list[NewsIn], rate: float, partitions: int,
            done: threading.Event) -> None:
    """Publish copies of ``templates`` (fresh ids) at ``rate`` messages/s, round-robin over the partitions."""
    producer = make_producer(bootstrap, linger_ms=0)
    try:
        started, sent = time.monotonic(), 0
        while not done.wait(max(0.0, started + sent / rate - time.monotonic())):
            news = templates[sent % len(templates)].model_copy(update={"id": f"{topic}-{sent}"})
            producer.send(topic, partition=sent % partitions, key=message_key(news), value=message_value(news))
            sent += 1
    finally:
        producer.close(timeout=10)


class Trial:
    """One topic, group and database; the consumer processes of one arm in one scenario."""

    def __init__(self, options: TakeoverOptions, bootstrap: str, workdir: Path, model_dir: Path, arm: Arm,
                 topic: str) -> None:
        self.options, self.bootstrap, self.workdir, self.model_dir, self.arm, self.topic = (
            options, bootstrap, workdir, model_dir, arm, topic)
        self.timeout_s = options.timeout_s or 20 + 2 * arm.session_ms / 1000  # restart: start-up + session
        create_topics(bootstrap, [topic, f"{topic}.dlq"], options.partitions)
        self.url = f"sqlite:///{workdir / f'{topic}.db'}"
        db.upgrade(self.url)
        self.engine = db.make_engine(self.url)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, member: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINPULSE_KAFKA_")}
        env.update({
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "FINPULSE_DATABASE_URL": self.url, "FINPULSE_MODEL_DIR": str(self.model_dir.resolve()),
            "FINPULSE_KAFKA_BOOTSTRAP": self.bootstrap, "FINPULSE_KAFKA_TOPIC": self.topic,
            "FINPULSE_KAFKA_DEAD_LETTER_TOPIC": f"{self.topic}.dlq", "FINPULSE_KAFKA_GROUP_ID": self.topic,
            "FINPULSE_KAFKA_SESSION_TIMEOUT_MS": str(self.arm.session_ms), "FINPULSE_STATS_INTERVAL_S": "1",
            "FINPULSE_HEALTH_DIR": str(self.workdir / "health"), "FINPULSE_LOG_LEVEL": "INFO",
            "FINPULSE_CONSUMER_PROCESSES": "1",  # one member per process: the trial kills a member
        })
        if self.arm.static:
            env["FINPULSE_KAFKA_GROUP_INSTANCE_ID"] = f"{self.topic}-m{member}"
        with (self.workdir / f"{self.topic}-m{member}.log").open("ab") as out:
            # cwd: the scratch folder, so that no .env file of the checkout changes the arm's settings
            self.processes[member] = subprocess.Popen(  # nosec B603 # argv of this interpreter, no shell
                [sys.executable, "-m", "monitor.app", "consume"], cwd=self.workdir, env=env, stdout=out,
                stderr=subprocess.STDOUT)

    def offsets(self) -> dict[int, int]:
        """Highest stored offset per partition."""
        table = News.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as connection:
            rows = connection.execute(select(table.c.kafka_partition, func.max(table.c.kafka_offset))
                                      .group_by(table.c.kafka_partition)).all()
        return {int(partition): int(offset) for partition, offset in rows}

    def members(self) -> dict[int, tuple[list[int], float]]:
        """(partitions, start time) per member index from its heartbeat row (made once the model is loaded and
        the client connected: what follows is the group join)."""
        table = ConsumerHeartbeat.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as connection:
            rows = {member: (list(parts or []), started.timestamp()) for member, parts, started in connection.execute(
                select(table.c.member, table.c.partitions, table.c.started_at)).all()}
        host = socket.gethostname()
        return {member: rows[f"{host}:{process.pid}"] for member, process in self.processes.items()
                if f"{host}:{process.pid}" in rows}

    def wait_steady(self) -> list[int]:
        """Wait until the members split every partition between them and each partition is flowing; the last
        member's partitions (the one to kill)."""
        deadline, everything = time.monotonic() + STEADY_TIMEOUT_S, set(range(self.options.partitions))
        while time.monotonic() < deadline:
            if dead := [m for m, process in self.processes.items() if process.poll() is not None]:
                raise FinpulseError(f"bench takeover: `finpulse consume` exited early; see "
                                    f"{self.workdir / f'{self.topic}-m{dead[0]}.log'}")
            owned = {member: parts for member, (parts, _) in self.members().items()}
            split = [p for parts in owned.values() for p in parts]
            if len(owned) == len(self.processes) and all(owned.values()) and sorted(split) == sorted(everything):
                before = self.offsets()
                time.sleep(1.0)
                after = self.offsets()
                if all(after.get(p, -1) > before.get(p, -1) for p in everything):
                    return owned[max(owned)]
            time.sleep(0.2)
        raise FinpulseError(f"bench takeover: the consumers of {self.topic} did not settle within "
                            f"{STEADY_TIMEOUT_S:.0f} s; see {self.workdir}/{self.topic}-m*.log")

    def kill_and_time(self, victim: list[int], restart: bool) -> dict[str, Any]:
        """SIGKILL the last member (and start it again if ``restart``); seconds from the kill until it is back up
        (restart), until the first row of one of ``victim`` partitions is stored, and until all of them have one."""
        member = max(self.processes)
        process = self.processes[member]
        killed, killed_wall = time.monotonic(), time.time()
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = self.offsets()  # the dead member can write no more
        if restart:
            self.start(member)
        first: dict[int, float] = {}
        while len(first) < len(victim) and time.monotonic() - killed < self.timeout_s:
            now = self.offsets()
            for partition in victim:
                if partition not in first and now.get(partition, -1) > before.get(partition, -1):
                    first[partition] = time.monotonic() - killed
            time.sleep(0.05)
        row = self.members().get(member) if restart else None
        back_up = round(row[1] - killed_wall, 2) if row is not None else None
        first_row = round(min(first.values()), 2) if first else None
        return {"partitions": victim, "back_up_s": back_up, "first_row_s": first_row,
                "rejoin_s": round(first_row - (back_up or 0.0), 2) if first_row is not None else None,
                "all_partitions_s": round(max(first.values()), 2) if len(first) == len(victim) else None}

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.engine.dispose()

    def measure(self, scenario: str, templates: list[NewsIn]) -> dict[str, Any]:
        done = threading.Event()
        stream = threading.Thread(target=publish, name=f"publish-{self.topic}", daemon=True, args=(
            self.bootstrap, self.topic, templates, self.options.rate, self.options.partitions, done))
        stream.start()
        try:
            for member in range(2 if scenario == "survivor" else 1):
                self.start(member)
            result = self.kill_and_time(self.wait_steady(), restart=scenario == "restart")
        finally:
            done.set()
            self.close()
            stream.join(timeout=15)
        log.info("takeover %s %s: %s", scenario, self.arm.label, result)
        return result


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present and len(present) == len(values) else None


def run_takeover(options: TakeoverOptions) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    workdir = options.workdir or REPO / "var" / "bench" / f"takeover-{run_id}"
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, origin = resolve_model(options.model, get_settings())
    templates = load_messages(find_source(REPO), 500, "t")
    known = {"dynamic": Arm("dynamic", options.session_ms, False), "static": Arm("static", options.session_ms, True),
             "short": Arm("short", options.short_session_ms, False)}
    arms, started = [known[name] for name in options.arms], time.monotonic()
    trials: dict[str, dict[str, list[dict[str, Any]]]] = {s: {a.name: [] for a in arms} for s in options.scenarios}
    broker = None if options.bootstrap else EmbeddedBroker(log_file=workdir / "tansu.log").start()
    try:
        bootstrap = options.bootstrap or broker.bootstrap  # type: ignore[union-attr]
        for round_no in range(options.rounds):
            for scenario in options.scenarios:
                for arm in arms if round_no % 2 == 0 else arms[::-1]:  # alternate, so drift hits every arm
                    topic = f"takeover-{run_id}-{round_no}-{scenario}-{arm.name}"
                    run = Trial(options, bootstrap, workdir, model_dir, arm, topic)
                    trials[scenario][arm.name].append(run.measure(scenario, templates))
    finally:
        if broker is not None:
            broker.stop()
    if not options.keep:
        for path in workdir.glob("*.db*"):
            path.unlink()
    measures = ("back_up_s", "rejoin_s", "first_row_s", "all_partitions_s")
    results = {scenario: {arm.name: {"label": arm.label, "session_ms": arm.session_ms, "trials": runs[arm.name],
                                     **{m: _median([t[m] for t in runs[arm.name]]) for m in measures}}
                          for arm in arms}
               for scenario, runs in trials.items()}
    return {"command": "finpulse bench takeover", "broker": options.bootstrap or f"embedded {tansu_binary().name}",
            "model": f"{model_dir} ({origin})", "partitions": options.partitions, "rate": options.rate,
            "rounds": options.rounds, "results": results, "cpu": cpu_model(), "cpu_flags": cpu_flags(),
            "timeout": f"{options.timeout_s:g} s" if options.timeout_s else "20 s + 2 sessions",
            "cores": usable_cores(), "seconds": round(time.monotonic() - started, 1), "workdir": str(workdir)}


def _ratio(slow: float | None, fast: float | None) -> str:
    return f"{slow / fast:.2f}x" if slow and fast else "n/a"


def _cell(value: float | None, width: int) -> str:
    return f"{'-' if value is None else f'{value:.1f}':>{width}}"


def takeover_table(report: dict[str, Any]) -> str:
    lines = [f"finpulse bench takeover: kill -9 of a `finpulse consume` member until its partitions store rows again "
             f"({report['partitions']} partitions, {report['rate']:g} msgs/s offered, median of {report['rounds']} "
             f"round(s), seconds from the kill)",
             f"broker {report['broker']}; model {report['model']}",
             f"CPU {report['cpu']}, {report['cores']} usable cores, flags {','.join(report['cpu_flags']) or '-'}",
             "", f"{'scenario':<10}{'membership':<25}{'back up':>9}{'+ rejoin':>10}{'= first row':>13}"
                 f"{'all partitions':>16}"]
    stalled = []
    for scenario, arms in report["results"].items():
        for arm in arms.values():
            lines.append(f"{scenario:<10}{arm['label']:<25}{_cell(arm['back_up_s'], 9)}{_cell(arm['rejoin_s'], 10)}"
                         f"{_cell(arm['first_row_s'], 13)}{_cell(arm['all_partitions_s'], 16)}")
            stalled += [f"{scenario}, {arm['label']}"] if arm["all_partitions_s"] is None else []
    lines += ["", *(f"{name}: NOT taken over: a partition of the dead member stored no row within "
                    f"{report['timeout']} in some round" for name in stalled)]
    for scenario, arms in report["results"].items():
        base = arms.get("dynamic")
        for other in (arms[name] for name in ("static", "short") if base and name in arms):
            lines.append(f"{scenario}: ({base['label']}) / ({other['label']}): first row "
                         f"{_ratio(base['first_row_s'], other['first_row_s'])}, rejoin "
                         f"{_ratio(base['rejoin_s'], other['rejoin_s'])} (above 1x: faster than dynamic)")
    static = report["results"].get("restart", {}).get("static")
    if static and static["back_up_s"] is not None:
        lines.append(f"static membership can only gain when the restarted member rejoins before the old session "
                     f"expires: back up after {static['back_up_s']:.1f} s (+ the broker's join), session "
                     f"{static['session_ms'] / 1000:g} s")
    lines.append(f"took {report['seconds']:.0f} s; logs in {report['workdir']}")
    return "\n".join(lines)
