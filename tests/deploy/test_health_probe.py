"""The health probe the image runs (``python -m monitor.cli.healthcheck``), against real servers."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import healthcheck
from monitor.core import db
from monitor.core.settings import load_settings
from monitor.stream.broker import EmbeddedBroker, free_port
from monitor.stream.health import HealthReporter
from monitor.stream.heartbeat import Heartbeat
from tests.deploy.files import clean_env


# --- the health probe the image runs -----------------------------------------------------------------------------
@pytest.fixture
def health_server() -> Iterator[tuple[int, list[tuple[int, bytes]]]]:
    """An HTTP server on 127.0.0.1 answering /_stcore/health with the (status, body) at the end of the list."""
    answers: list[tuple[int, bytes]] = [(200, b"ok")]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers[-1] if self.path == "/_stcore/health" else (404, b"")
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], answers
    finally:
        server.shutdown()
        server.server_close()


def test_probe_role_follows_the_main_process() -> None:
    assert healthcheck.role_from_cmdline("/usr/bin/tini -- finpulse dashboard --address 0.0.0.0") == "dashboard"
    assert healthcheck.role_from_cmdline("python -m streamlit run /opt/venv/.../dashboards/app.py") == "dashboard"
    assert healthcheck.role_from_cmdline("/usr/bin/tini -- finpulse consume") == "worker"
    assert healthcheck.role_from_cmdline("/usr/bin/tini -- finpulse scheduler") == "worker"


def test_dashboard_probe(health_server: tuple[int, list[tuple[int, bytes]]], monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    port, answers = health_server
    monkeypatch.setenv("FINPULSE_DASHBOARD_PORT", str(port))
    assert healthcheck.main(["dashboard"]) == 0
    answers.append((503, b"starting"))
    assert healthcheck.main(["dashboard"]) == 1
    monkeypatch.setenv("FINPULSE_DASHBOARD_PORT", str(free_port()))
    assert healthcheck.main(["dashboard"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("healthy: dashboard") and "/_stcore/health" in lines[0]
    assert lines[1].startswith("unhealthy:") and "503" in lines[1]
    assert lines[2].startswith("unhealthy:") and "refused" in lines[2].lower()


def test_worker_probe_healthy_in_a_real_process(broker: EmbeddedBroker, db_url: str, tmp_path: Path) -> None:
    env = {**clean_env(), "FINPULSE_KAFKA_BOOTSTRAP": broker.bootstrap, "FINPULSE_DATABASE_URL": db_url}
    result = subprocess.run([sys.executable, "-m", "monitor.cli.healthcheck", "worker"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"healthy: kafka {broker.bootstrap} reachable; database at ")


def test_worker_probe_reports_what_is_wrong(broker: EmbeddedBroker, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FINPULSE_KAFKA_BOOTSTRAP", f"{closed},{broker.bootstrap}")
    monkeypatch.setenv("FINPULSE_DATABASE_URL", sqlite_url)  # exists once opened, but never migrated
    assert healthcheck.main(["worker"]) == 1
    monkeypatch.setenv("FINPULSE_KAFKA_BOOTSTRAP", closed)
    assert healthcheck.main(["worker"]) == 1
    monkeypatch.setenv("FINPULSE_BATCH_MAX_WAIT_MS", "soon")
    assert healthcheck.main(["worker"]) == 1
    assert healthcheck.main(["nonsense"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("unhealthy: database ") and "`finpulse db upgrade`" in lines[0]
    assert lines[1].startswith(f"unhealthy: no Kafka bootstrap server reachable ({closed}:")
    assert "; database " in lines[1] and "`finpulse db upgrade`" in lines[1]  # every failure is named
    assert lines[2].startswith("unhealthy: invalid setting FINPULSE_BATCH_MAX_WAIT_MS")
    assert "unknown role 'nonsense'" in lines[3]


def test_probe_stays_light() -> None:
    # The image runs it every 30 s next to a consumer holding a model: no torch, no CLI framework.
    code = ("import sys, monitor.cli.healthcheck; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'transformers', 'typer', 'kafka', 'streamlit'}); print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_worker_probe_reads_the_consumer_state_from_the_shared_working_directory(
    broker: EmbeddedBroker, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the image the consumer and the probe share WORKDIR, so the default FINPULSE_HEALTH_DIR (./var/health)
    is the same folder for both; an outage the consumer reports fails the container's health."""
    for key in [k for k in os.environ if k.startswith("FINPULSE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(kafka_bootstrap=broker.bootstrap, database_url=db_url)
    member = f"{socket.gethostname()}:{os.getpid()}"
    reporter = HealthReporter(settings, member)  # writes ./var/health/consumer-<host>_<pid>.json
    env = {**clean_env(), "FINPULSE_KAFKA_BOOTSTRAP": broker.bootstrap, "FINPULSE_DATABASE_URL": db_url}

    def run_probe() -> tuple[int, str]:
        result = subprocess.run([sys.executable, "-m", "monitor.cli.healthcheck", "worker"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout.strip()

    try:
        assert run_probe() == (0, f"healthy: kafka {broker.bootstrap} reachable; database at {db.head_revision()}; "
                                  f"consumer {member} starting")
        reporter.set("broker_reconnecting", "NoBrokersAvailable (attempt 5)")
        code, line = run_probe()
        assert code == 1 and line.startswith(f"unhealthy: consumer {member} broker_reconnecting since ")
        assert line.endswith("NoBrokersAvailable (attempt 5)")
        engine = db.make_engine(db_url)  # what it serves comes from its heartbeat row
        Heartbeat(engine, settings.kafka_group_id, settings.kafka_topic, member=member).beat(
            lag=0, messages_per_s=1.0, partitions=[0], model_version="v7", status="model_refused", detail="v8 broken")
        engine.dispose()
        reporter.set("model_refused", "champion v8 failed its test load")
        code, line = run_probe()
        assert code == 0 and f"; degraded: serving v7 because champion v8 failed its test load (consumer {member}" \
            in line
    finally:
        reporter.close()
    assert run_probe()[0] == 0 and not list((tmp_path / "var" / "health").iterdir())
