"""`finpulse demo` end to end: real broker, consumer, stream and dashboard subprocesses; clean stops; no orphans."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import bcrypt
import pytest
from sqlmodel import Session, col, select

from monitor.core import db
from monitor.core.settings import load_settings
from monitor.demo.setup import DEMO_RULES, seed_rules
from monitor.demo.stream import NewsStream
from monitor.stream.broker import EmbeddedBroker, free_port, port_in_use
from schemas.alerts import AlertRule
from schemas.types import utcnow
from tests.stream_helpers import log_tail, read_topic, row_counts, wait_for

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 180


def demo_env(tmp_path: Path, broker_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINPULSE_")}
    env.update({
        "FINPULSE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "FINPULSE_MODELS_DIR": str(tmp_path / "models"),
        "FINPULSE_BROKER_PORT": str(broker_port),
        "FINPULSE_DEVICE": "cpu",
        "FINPULSE_KAFKA_SESSION_TIMEOUT_MS": "2000",  # tansu completes a group join in about half of it
        "FINPULSE_BATCH_MAX_WAIT_MS": "200",
    })
    return env


def pids_mentioning(*fragments: str) -> list[int]:
    """Processes whose command line contains every fragment (Linux /proc; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(fragment in cmdline for fragment in fragments) and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def rules_by_name(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with Session(engine) as session:
            names = session.exec(select(AlertRule.name).where(
                col(AlertRule.name).in_([rule.name for rule in DEMO_RULES]))).all()
    finally:
        engine.dispose()
    return {name: list(names).count(name) for name in set(names)}


def test_example_rules_are_added_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rules.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        assert seed_rules(engine) == [rule.name for rule in DEMO_RULES]
        assert seed_rules(engine) == []
    finally:
        engine.dispose()
    assert rules_by_name(url) == {rule.name: 1 for rule in DEMO_RULES}


def test_stream_sends_history_first_then_loops_with_unique_ids(broker: EmbeddedBroker, topics: tuple[str, str],
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps({"id": f"n{i}", "headline": f"Story {i}", "tickers": ["ACME"],
                                        "published_at": "2020-01-01T00:00:00Z"}) + "\n" for i in range(3)))
    settings = load_settings(kafka_bootstrap=broker.bootstrap, kafka_topic=topics[0])
    before = utcnow()
    # 10 msg/s with 0.4 s of history: 4 past messages, then live ones; 3 rows a pass, so 3 passes for 8.
    stream = NewsStream(settings, [path], rate=10, limit=8, tag="dtest", history_s=0.4).start()
    wait_for(lambda: stream.finished, 30, "the stream to end")
    assert stream.error is None and stream.sent == 8 and stream.history == 4
    sent = [json.loads(r.value) for r in read_topic(broker.bootstrap, topics[0], 8)]
    assert len({item["id"] for item in sent}) == 8
    assert {item["id"] for item in sent} >= {"n0~dtest.0", "n0~dtest.1", "n1~dtest.2"}
    stamps = sorted(datetime.fromisoformat(item["published_at"]) for item in sent)
    history, live = stamps[:4], stamps[4:]
    assert history[0] >= before - timedelta(seconds=0.5)
    assert [round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(history)] == [0.1] * 3
    assert history[-1] < live[0]


def test_demo_runs_twice_on_one_database_and_leaves_nothing_running(tmp_path: Path, tiny_model_dir: Path) -> None:
    port = free_port()
    env = demo_env(tmp_path, port)
    url = env["FINPULSE_DATABASE_URL"]
    counts = []
    for _ in range(2):  # the second run must store its stream too (fresh topic, run-unique ids), not clash
        done = subprocess.run(
            [sys.executable, "-m", "monitor.app", "demo", "--model", str(tiny_model_dir), "--no-dashboard",
             "--duration", "15", "--limit", "60", "--rate", "10", "--history", "0.05"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "--duration 15 s reached" in done.stdout
        assert f"tansu on 127.0.0.1:{port}" in done.stdout
        assert not port_in_use(port)
        assert pids_mentioning(f"127.0.0.1:{port}") == []
        counts.append(row_counts(url)[0])
    assert 0 < counts[0] < counts[1], counts
    assert rules_by_name(url) == {rule.name: 1 for rule in DEMO_RULES}
    assert (tmp_path / "var" / "demo" / "broker.log").exists()


def test_busy_broker_port_is_reported_in_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "monitor.app", "demo", "--model", str(tiny_model_dir), "--no-dashboard"],
            cwd=tmp_path, env=demo_env(tmp_path, port), capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
            check=False)
    assert done.returncode == 2
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: port {port} on 127.0.0.1 is in use") and "--port" in error, done.stderr


def test_sigint_stops_demo_with_dashboard_cleanly(tmp_path: Path, tiny_model_dir: Path) -> None:
    broker_port, dashboard_port = free_port(), free_port()
    env = demo_env(tmp_path, broker_port)
    out_path = tmp_path / "demo.out"
    with out_path.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor.app", "demo", "--model", str(tiny_model_dir),
             "--dashboard-port", str(dashboard_port), "--rate", "20", "--history", "0"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def printed(pattern: str) -> re.Match[str] | None:
            return re.search(pattern, out_path.read_text(errors="replace"))

        wait_for(lambda: printed(r"dashboard\s+http://\S+") or process.poll() is not None, RUN_TIMEOUT_S,
                 "the dashboard URL")
        url_line = printed(r"dashboard\s+(http://\S+)\s+password: (\S+)")
        assert url_line is not None, out_path.read_text()
        url, password = url_line.group(1), url_line.group(2)
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
            assert response.status == 200
        # The printed password matches the hash the dashboard process was given.
        streamlit = pids_mentioning("streamlit", f"--server.port {dashboard_port}")
        assert len(streamlit) == 1
        environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{streamlit[0]}/environ").read_bytes()
                       .split(b"\0") if b"=" in item)
        assert bcrypt.checkpw(password.encode(), environ[b"FINPULSE_DASHBOARD_PASSWORD_HASH"])
        wait_for(lambda: row_counts(env["FINPULSE_DATABASE_URL"])[0] > 0, 120, "scored rows", poll_s=0.5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0, log_tail(out_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "signal received" in out_path.read_text()
    deadline = time.monotonic() + 10  # the kernel may take a moment to release the listening sockets
    while (port_in_use(broker_port) or port_in_use(dashboard_port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_in_use(broker_port) and not port_in_use(dashboard_port)
    assert pids_mentioning(f"127.0.0.1:{broker_port}") == []
    assert pids_mentioning(f"--server.port {dashboard_port}") == []
