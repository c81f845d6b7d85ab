"""`finpulse consume` with several processes (FINPULSE_CONSUMER_PROCESSES): the children share the group's
partitions and write every message once, a signal to the parent stops them all cleanly, a crashed child stops the
set with its exit code, and a killed parent leaves no orphan consuming."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.core import db
from monitor.stream.broker import EmbeddedBroker
from tests.stream_helpers import consumer_settings, encode, log_tail, news, publish, row_counts, settings_env, wait_for

REPO = Path(__file__).resolve().parents[2]
MESSAGES = 400


def start_set(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "monitor.app", "consume"], cwd=REPO,
                                env={**env, "FINPULSE_CONSUMER_PROCESSES": "2"}, stdout=out, stderr=subprocess.STDOUT)


def set_up(broker: EmbeddedBroker, topics: tuple[str, str], url: str, model: Path,
           log_path: Path) -> tuple[dict[str, str], subprocess.Popen[bytes], list[int]]:
    """A migrated database and a running `finpulse consume` with two children: (its env, the parent, the pids)."""
    db.upgrade(url)
    env = settings_env(consumer_settings(broker.bootstrap, topics, url, model))
    parent = start_set(env, log_path)
    wait_for(lambda: len(children_of(parent.pid)) == 2, 30, "two consumer processes")
    return env, parent, children_of(parent.pid)


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def members(url: str) -> set[str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            return {row[0] for row in connection.execute(text("SELECT member FROM consumer_heartbeat"))}
    finally:
        engine.dispose()


@pytest.mark.slow
def test_two_processes_share_the_partitions_and_stop_together(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "consume.log"
    _, parent, pids = set_up(broker, topics, sqlite_url, tiny_model_dir, log_path)
    try:
        publish(broker.bootstrap, topics[0], [(f"T{i % 17}".encode(), encode(news(i))) for i in range(MESSAGES)])
        wait_for(lambda: row_counts(sqlite_url)[0] >= MESSAGES, 180, f"{MESSAGES} rows")
        # Both children are members of the group, each with its own heartbeat row (host:pid).
        wait_for(lambda: {m.rsplit(":", 1)[1] for m in members(sqlite_url)} >= {str(p) for p in pids}, 30,
                 "a heartbeat from each child")
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 0, log_tail(log_path)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert not any(alive(pid) for pid in pids)
    assert row_counts(sqlite_url) == (MESSAGES, MESSAGES)
    log = log_path.read_text()
    assert "consuming with 2 processes" in log
    assert log.count("scoring on 1 CPU thread(s)") == 2, "each child of a set scores on one thread"


@pytest.mark.slow
def test_a_lone_process_scores_on_every_usable_core(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """FINPULSE_CONSUMER_PROCESSES=1 (throughput for a backlog): one process, its scoring on every core the
    affinity allows (an operator's OMP_NUM_THREADS wins: tests/bench/test_bench.py)."""
    db.upgrade(sqlite_url)
    env = settings_env(consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir))
    env.pop("OMP_NUM_THREADS", None)
    env["FINPULSE_CONSUMER_PROCESSES"] = "1"
    publish(broker.bootstrap, topics[0], [(b"T1", encode(news(i))) for i in range(20)])
    done = subprocess.run([sys.executable, "-m", "monitor.app", "consume", "--max-messages", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"scoring on {len(os.sched_getaffinity(0))} CPU thread(s)" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_crashed_child_stops_the_set_and_a_killed_parent_leaves_no_orphan(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "consume.log"
    env, parent, (first, second) = set_up(broker, topics, sqlite_url, tiny_model_dir, log_path)
    try:
        os.kill(first, signal.SIGKILL)
        assert parent.wait(timeout=60) == 128 + signal.SIGKILL, log_tail(log_path)
        assert not alive(second)
        assert f"consumer process {first} exited with {128 + signal.SIGKILL}" in log_path.read_text()

        parent = start_set(env, log_path)
        wait_for(lambda: len(children_of(parent.pid)) == 2, 30, "two consumer processes")
        pids = children_of(parent.pid)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
