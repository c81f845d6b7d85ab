"""The health probe the image runs (``python -m monitor.cli.healthcheck``), against real servers."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import healthcheck
from monitor.stream.broker import EmbeddedBroker, free_port
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
    assert lines[2].startswith("unhealthy: invalid setting FINPULSE_BATCH_MAX_WAIT_MS")
    assert "unknown role 'nonsense'" in lines[3]
