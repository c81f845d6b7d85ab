"""``finpulse health``: the container probe's worker checks (:mod:`monitor.cli.healthcheck`), one per line.

The broker's and the database's reachability, then each consumer health file of this host (FINPULSE_HEALTH_DIR,
relative to the working directory like the other default paths): its state, since when, why, and its group and
topic. The last line and the exit code are the probe's: 0 healthy (degraded included), 1 unhealthy.
"""

from __future__ import annotations

import typer

MARKS = {"ok": "ok", "degraded": "DEGRADED", "unhealthy": "UNHEALTHY", "ignored": "ignored"}


def health() -> None:
    """Health of this host's finpulse worker: broker, database and each consumer's state (exit 1 = unhealthy, as
    the container probe)."""
    from monitor.cli.healthcheck import verdict, worker_checks  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.stream.health import span  # lazy: startup
    from schemas.types import utcnow  # lazy: startup

    settings = get_settings()
    checks = worker_checks(settings)
    now = utcnow()
    for check in checks:
        typer.echo(f"  {MARKS[check.state]:<10} {check.text.removeprefix('degraded: ')}")
        record = check.record
        if record is not None and check.state != "ignored":
            typer.echo(f"  {'':<10}   group {record.group}, topic {record.topic}, pid {record.pid}; state "
                       f"{record.status} since {record.since:%Y-%m-%d %H:%M:%S}Z; file updated "
                       f"{span((now - record.updated_at).total_seconds())} ago")
    if not any(check.record is not None for check in checks):
        typer.echo(f"  {'':<10} no consumer health files in {settings.health_dir} (no consumer runs on this host, "
                   "or it runs in another working directory or with another FINPULSE_HEALTH_DIR)")
    code, line = verdict(checks)
    typer.echo(line)
    raise typer.Exit(code)
