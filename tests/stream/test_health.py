"""Consumer health files (monitor.stream.health), the container probe and `finpulse health` that read them.

Real files in a temporary FINPULSE_HEALTH_DIR, a real migrated SQLite database, the embedded broker, and the
probe run as Docker runs it (``python -m monitor.cli.healthcheck worker`` in a fresh process).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.app import app
from monitor.core import db
from monitor.core.settings import get_settings, load_settings
from monitor.stream import health
from monitor.stream.broker import EmbeddedBroker, free_port
from monitor.stream.health import HealthReporter, read_records
from monitor.stream.heartbeat import Heartbeat
from tests.deploy.files import clean_env

MEMBER = f"{socket.gethostname()}:{os.getpid()}"  # this test process: alive while the probe runs
DETAILS = {
    "database_retrying": "OperationalError: connection refused (attempt 4, next in 8 s)",
    "broker_reconnecting": "NoBrokersAvailable: no broker answered (attempt 2)",
    "model_refused": "champion v3 failed its test load: RuntimeError: size mismatch",
}


def reporter(health_dir: Path, member: str = MEMBER) -> HealthReporter:
    return HealthReporter(load_settings(health_dir=health_dir, kafka_group_id="g1", kafka_topic="news.t"), member)


def timeless(line: str) -> str:
    """The line without the state's age (``(3 s)``), which moves on between two runs of the checks."""
    return re.sub(r"\((\d+ (s|min)|\d+ h \d+ min)\)", "(age)", line)


def saved(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_reporter_writes_its_state_and_close_removes_the_file(tmp_path: Path) -> None:
    health_dir = tmp_path / "var" / "health"  # created on the first write
    rep = reporter(health_dir, "host-1:42")
    assert rep.path == health_dir / "consumer-host-1_42.json"
    first = saved(rep.path)
    assert (first["status"], first["detail"], first["pid"], first["group"], first["topic"]) == (
        "starting", None, os.getpid(), "g1", "news.t")
    assert rep.status == "starting" and rep.detail is None
    rep.set("database_retrying", "OperationalError: refused\n  at line 2 \0")
    retrying = saved(rep.path)
    assert retrying["detail"] == "OperationalError: refused at line 2"  # one line, no NUL
    assert rep.detail == retrying["detail"] and retrying["since"] != first["since"]
    rep.set("database_retrying", "OperationalError: refused (attempt 2)")  # same state, new detail: same since
    assert saved(rep.path)["since"] == retrying["since"]
    rep.set("model_refused", "x" * 900)
    assert len(str(saved(rep.path)["detail"])) == health.DETAIL_MAX_CHARS
    rep.ok()
    assert (rep.status, saved(rep.path)["status"], saved(rep.path)["detail"]) == ("ok", "ok", None)
    with pytest.raises(ValueError, match="unknown health status"):
        rep.set("sleeping")  # type: ignore[arg-type,unused-ignore]
    assert [p.name for p in health_dir.iterdir()] == [rep.path.name]  # no temp files left behind
    rep.close()
    assert list(health_dir.iterdir()) == []
    rep.close()  # twice is fine


def test_an_unchanged_state_is_rewritten_at_most_every_few_seconds(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rep = reporter(tmp_path)
    rep.ok()
    stamp = saved(rep.path)["updated_at"]
    for _ in range(50):
        rep.ok()  # cheap: no write
    assert saved(rep.path)["updated_at"] == stamp
    monkeypatch.setattr(health, "REFRESH_S", 0.0)
    rep.ok()
    assert saved(rep.path)["updated_at"] != stamp


def test_readers_never_see_half_a_file(tmp_path: Path) -> None:
    rep = reporter(tmp_path)
    stop, seen, errors = threading.Event(), list[str](), list[Exception]()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.extend(record.status for record in read_records(tmp_path))
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                errors.append(error)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(400):  # every call changes the detail, so every call writes
            rep.set("broker_reconnecting" if i % 2 else "ok", f"attempt {i}")
    finally:
        stop.set()
        thread.join()
    assert errors == [] and seen and set(seen) <= {"starting", "ok", "broker_reconnecting"}
    assert len(list(tmp_path.glob(health.FILE_GLOB))) == 1 and not list(tmp_path.glob(".consumer-*"))


def test_an_unwritable_health_dir_never_stops_the_consumer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "health"
    blocker.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="monitor.stream.health"):
        rep = reporter(blocker)
        rep.set("database_retrying", "down")
        rep.set("database_retrying", "down")
        rep.close()
    assert rep.status == "database_retrying"
    assert len([r for r in caplog.records if "could not write the health file" in r.message]) == 1


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_file_whose_process_is_gone_is_stale_and_the_next_reporter_removes_it(tmp_path: Path) -> None:
    live = reporter(tmp_path, MEMBER)
    live.set("database_retrying", "down")
    data = saved(live.path)
    host = socket.gethostname()
    gone = tmp_path / "consumer-gone.json"
    gone.write_text(json.dumps({**data, "member": f"{host}:1", "pid": dead_pid()}))
    reused = tmp_path / "consumer-reused.json"  # a live pid, but not the process that wrote the file
    reused.write_text(json.dumps({**data, "member": f"{host}:2", "pid_started": -1}))
    other_host = tmp_path / "consumer-elsewhere.json"
    other_host.write_text(json.dumps({**data, "member": "elsewhere:3", "host": "elsewhere"}))
    (tmp_path / "consumer-junk.json").write_text("{not json")
    by_member = {r.member: r.liveness() for r in read_records(tmp_path)}
    assert by_member == {MEMBER: "live", f"{host}:1": "gone", f"{host}:2": "gone", "elsewhere:3": "elsewhere"}
    reporter(tmp_path, "newcomer:9").close()
    assert not gone.exists() and not reused.exists()  # this host's dead consumers' files are pruned
    assert other_host.exists() and live.path.exists()  # another host's processes cannot be checked from here
    live.close()


# --- the probe and `finpulse health`, per state -----------------------------------------------------------------
@pytest.fixture
def worker_env(broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    db.upgrade(sqlite_url)
    return {**clean_env(), "FINPULSE_KAFKA_BOOTSTRAP": broker.bootstrap, "FINPULSE_DATABASE_URL": sqlite_url,
            "FINPULSE_HEALTH_DIR": str(tmp_path / "health")}


def probe(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "monitor.cli.healthcheck", "worker"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=60)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return result.returncode, lines[0]


def finpulse_health(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    for key, value in env.items():
        if key.startswith("FINPULSE_"):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["health"])
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output.splitlines()


@pytest.mark.parametrize("status", ["ok", "starting", "database_retrying", "broker_reconnecting", "model_refused"])
def test_probe_and_finpulse_health_report_each_state(status: str, worker_env: dict[str, str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(health_dir=Path(worker_env["FINPULSE_HEALTH_DIR"]),
                             database_url=worker_env["FINPULSE_DATABASE_URL"])
    rep = HealthReporter(settings, MEMBER)
    rep.set(status, DETAILS.get(status))  # type: ignore[arg-type]
    engine = db.make_engine(settings.database_url)
    Heartbeat(engine, settings.kafka_group_id, settings.kafka_topic, member=MEMBER).beat(
        lag=0, messages_per_s=0.0, partitions=[0], model_version="v2", status=rep.status, detail=rep.detail)
    engine.dispose()
    try:
        code, line = probe(worker_env, tmp_path)
        cli_code, lines = finpulse_health(worker_env, monkeypatch)
    finally:
        rep.close()
    assert cli_code == code and timeless(lines[-1]) == timeless(line)  # `finpulse health` ends with the verdict
    prefix = f"healthy: kafka {worker_env['FINPULSE_KAFKA_BOOTSTRAP']} reachable; database at {db.head_revision()}"
    if status in ("ok", "starting"):
        assert code == 0 and line == f"{prefix}; consumer {MEMBER} {status}"
    elif status == "model_refused":
        assert code == 0 and line.startswith(f"{prefix}; degraded: serving v2 because {DETAILS[status]} "
                                             f"(consumer {MEMBER}, since ")
    else:
        assert code == 1 and line.startswith(f"unhealthy: consumer {MEMBER} {status} since ")
        assert line.endswith(f"): {DETAILS[status]}")
    state_line = next(text for text in lines if f"consumer {MEMBER}" in text)
    assert state_line.split()[0] == {"ok": "ok", "starting": "ok", "model_refused": "DEGRADED"}.get(status,
                                                                                                "UNHEALTHY")
    assert any(f"group {settings.kafka_group_id}, topic {settings.kafka_topic}, pid {os.getpid()}" in text
               for text in lines)


def test_database_down_and_a_consumer_retrying_it_are_both_named(worker_env: dict[str, str], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/finpulse"
    env = {**worker_env, "FINPULSE_DATABASE_URL": down}
    rep = reporter(Path(env["FINPULSE_HEALTH_DIR"]))
    rep.set("database_retrying", DETAILS["database_retrying"])
    try:
        code, line = probe(env, tmp_path)
        cli_code, lines = finpulse_health(env, monkeypatch)
    finally:
        rep.close()
    assert (code, cli_code) == (1, 1) and timeless(lines[-1]) == timeless(line)
    database, consumer = line.removeprefix("unhealthy: ").split("; consumer ")
    assert database.startswith("database postgresql+psycopg://postgres@127.0.0.1:") and "unreachable" in database
    assert consumer.startswith(f"{MEMBER} database_retrying since ") and DETAILS["database_retrying"] in consumer


def test_stale_files_are_ignored_and_named(worker_env: dict[str, str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rep = reporter(Path(worker_env["FINPULSE_HEALTH_DIR"]))
    rep.set("database_retrying", "down")
    data = saved(rep.path)
    rep.close()
    stale = rep.path.with_name("consumer-crashed.json")
    stale.write_text(json.dumps({**data, "pid": dead_pid()}))  # a consumer killed while retrying
    code, line = probe(worker_env, tmp_path)
    assert code == 0 and line == (f"healthy: kafka {worker_env['FINPULSE_KAFKA_BOOTSTRAP']} reachable; "
                                  f"database at {db.head_revision()}")
    cli_code, lines = finpulse_health(worker_env, monkeypatch)
    assert cli_code == 0 and lines[-1] == line
    assert any(text.split()[0] == "ignored" and "stale file, process" in text for text in lines)


def test_finpulse_health_without_consumers_says_where_it_looked(worker_env: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, lines = finpulse_health(worker_env, monkeypatch)
    assert code == 0 and lines[-1].startswith("healthy: kafka ")
    assert any(f"no consumer health files in {worker_env['FINPULSE_HEALTH_DIR']}" in text for text in lines)
