"""``finpulse dashboard``: run the Streamlit dashboard, or print a password hash for the (deprecated) bootstrap admin.

Only typer is imported at module level so ``finpulse --help`` stays fast; streamlit starts in its own process.
With ``FINPULSE_DASHBOARD_AUTH_DISABLED`` (read-only, no login) it listens on a loopback address only.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

APP_PATH = Path(__file__).resolve().parent / "app.py"

dashboard_app = typer.Typer(
    help="The Streamlit dashboard: `finpulse dashboard` runs it; `hash-password` prints a password hash (deprecated: "
         "use `finpulse users add`).",
    invoke_without_command=True,
)


def streamlit_command(port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line: headless, no usage statistics, no file watcher (a server, not a dev loop)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", address,
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--theme.base", "light",
    ]


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP literal or ``localhost``) is reachable from this machine only."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


AUTH_DISABLED_REMOTE = (
    "error: FINPULSE_DASHBOARD_AUTH_DISABLED=true serves the dashboard without a login, so it listens on a loopback "
    "address only, not {address}; use --address 127.0.0.1, or unset FINPULSE_DASHBOARD_AUTH_DISABLED and create "
    "accounts with `finpulse users add NAME --role admin`"
)


@dashboard_app.callback()
def run(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: FINPULSE_DASHBOARD_PORT).")] = None,
    address: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 for all (containers).")] = "127.0.0.1",
) -> None:
    """Serve the dashboard (headless) until Ctrl-C."""
    from monitor.core.settings import get_settings  # lazy: startup

    if ctx.invoked_subcommand is not None:
        return

    settings = get_settings()
    if settings.dashboard_auth_disabled and not is_loopback(address):
        typer.echo(AUTH_DISABLED_REMOTE.format(address=address), err=True)
        raise typer.Exit(2)
    command = streamlit_command(port or settings.dashboard_port, address)
    typer.echo(f"dashboard on http://{address}:{port or settings.dashboard_port} (Ctrl-C stops it)")
    sys.stdout.flush()
    # exec: streamlit becomes this process, so Ctrl-C and SIGTERM reach it directly and no child is orphaned.
    os.execv(sys.executable, command)  # nosec B606 # argv of this interpreter, no shell: streamlit replaces us


@dashboard_app.command("hash-password")
def hash_password_command() -> None:
    """Prompt for a password (twice) and print its bcrypt hash for FINPULSE_DASHBOARD_PASSWORD_HASH (the bootstrap
    admin, deprecated: create accounts with `finpulse users add NAME --role admin`)."""
    from monitor.core.accounts import hash_password  # lazy: startup

    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    typer.echo(hash_password(password))
