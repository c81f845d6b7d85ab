"""Container health probe: ``python -m monitor.cli.healthcheck [auto|dashboard|worker]``.

Docker runs it inside the container (the image's HEALTHCHECK and docker/compose.yaml). Exit 0 means healthy and
1 unhealthy, as Docker expects; the one line printed lands in ``docker inspect``'s health log.

- ``dashboard``: Streamlit answers ``ok`` on ``/_stcore/health`` at FINPULSE_DASHBOARD_PORT.
- ``worker`` (consumer, scheduler): a Kafka bootstrap server accepts connections, and the database answers and
  is migrated to this code's head revision (a consumer on an old schema would fail on its first write).
- ``auto``: ``dashboard`` when the container's main process is the dashboard, else ``worker``.

It imports neither torch nor the CLI, so a probe costs a fraction of a second every interval.
"""

from __future__ import annotations

import logging
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

from monitor.core import db
from monitor.core.errors import FinpulseError
from monitor.core.settings import Settings, load_settings

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
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
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


def check_database(url: str) -> str:
    from sqlalchemy.engine import make_url

    safe_url = make_url(url).render_as_string(hide_password=True)
    engine = db.make_engine(url)
    try:
        current = db.current_revision(engine)
    except Exception as error:  # noqa: BLE001 - any driver error means "not healthy"; say which
        raise Unhealthy(f"database {safe_url} unreachable: {type(error).__name__}: {str(error).splitlines()[0]}")\
            from None
    finally:
        engine.dispose()
    head = db.head_revision()
    if current != head:
        raise Unhealthy(f"database {safe_url} at migration {current or 'none'}, code needs {head}; "
                        "run `finpulse db upgrade`")
    return f"database at {current}"


def probe(role: Role, settings: Settings) -> str:
    """Run the checks of ``role``; return the healthy line or raise :class:`Unhealthy`."""
    if role == "dashboard":
        return check_dashboard(settings.dashboard_port)
    return f"{check_kafka(settings.kafka_bootstrap)}; {check_database(settings.database_url)}"


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
