"""``finpulse retrain``, ``scheduler``, ``drift`` and ``finpulse models list|promote|rollback|approve``.

Registered on the main app by :func:`register`; heavy modules (torch, APScheduler) load inside the commands.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from monitor.core.errors import ConfigError

log = logging.getLogger(__name__)

models_app = typer.Typer(help="The model registry: list versions, promote one, roll back, approve a candidate.",
                         no_args_is_help=True)
Actor = Annotated[str | None, typer.Option(help="Who acts, for the audit trail (default: the OS user).")]


def retrain_command(
    config: Annotated[Path | None, typer.Option(help="YAML/JSON of `finpulse train` options for this run "
                                                     "(default: FINPULSE_RETRAIN_CONFIG).")] = None,
    version: Annotated[str | None, typer.Option(help="Name of the new version (default vYYYYMMDD-HHMMSS).")]
    = None,
    wait: Annotated[bool, typer.Option(help="Wait while another retraining holds the lock (else exit 1).")]
    = True,
) -> None:
    """Run one retraining now: new labels + replay, from the champion's weights, gated against the champion."""
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.lifecycle.retrain import retrain  # lazy: torch

    outcome = retrain(get_settings(), trigger="cli", wait=wait, config=config, version=version)
    typer.echo(json.dumps({"status": outcome.status, "reason": outcome.reason, "version": outcome.version,
                           "run_id": outcome.run_id, "gate": outcome.gate}, indent=2, default=str))
    if outcome.status == "busy":
        raise typer.Exit(1)


def scheduler_command(
    retrain_at: Annotated[str | None, typer.Option(help="Also run one retraining at this ISO-8601 time (UTC if "
                                                        "no zone given), e.g. to try the scheduler.")] = None,
) -> None:
    """Run retraining on FINPULSE_RETRAIN_CRON and the drift check on FINPULSE_DRIFT_CRON until stopped."""
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.lifecycle.scheduler import parse_time, run_scheduler  # lazy: torch

    when = None
    if retrain_at is not None:
        try:
            when = parse_time(retrain_at)
        except ValueError:
            raise ConfigError(f"--retrain-at {retrain_at!r}: expected an ISO-8601 time such as "
                              "2026-01-31T02:00:00Z") from None
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received: stopping after the running jobs", signal.Signals(signum).name)
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # a second signal ends the process at once

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    run_scheduler(get_settings(), stop, retrain_at=when)
    typer.echo("scheduler stopped")


def drift_command() -> None:
    """Check drift now (recent predictions vs the champion's validation ones); store and alert as scheduled."""
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.lifecycle.scheduler import run_drift  # lazy: torch

    report = run_drift(get_settings(), slot=None, trigger="cli")
    if report is None:
        typer.echo(json.dumps({"drifted": False, "note": "no champion model"}))
        return
    typer.echo(json.dumps({k: getattr(report, k) for k in (
        "id", "model_version", "news_count", "label_js", "confidence_js", "js", "threshold", "drifted", "note",
        "alert_id")}, indent=2, default=str))


@contextmanager
def _engine() -> Iterator[Any]:
    from monitor.core import db  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    engine = db.make_engine(get_settings().database_url)
    try:
        db.require_migrated(engine)
        yield engine
    finally:
        engine.dispose()


def _f1(metrics: dict[str, Any], key: str) -> str:
    value = (metrics.get(key) or {}).get("macro_f1")
    return f"{value:.4f}" if isinstance(value, float) else "-"


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every version, oldest first: status, gate decision, gold / new-labels macro-F1, label range, parent, and
    whether it awaits approval (FINPULSE_RETRAIN_PROMOTION=approve) or who approved it."""
    from monitor.lifecycle import registry  # lazy: startup

    with _engine() as engine:
        rows = registry.list_versions(engine)
    if as_json:
        typer.echo(json.dumps([row.model_dump(exclude={"train_args"}) for row in rows], indent=2, default=str))
        return
    if not rows:
        typer.echo("no model registered; train one with `finpulse train`")
        return
    typer.echo(f"{'version':<24} {'status':<10} {'gate':<9} {'gold F1':>8} {'new F1':>8} {'labels<=':>8}  parent")
    for row in rows:
        decision = (row.gate or {}).get("decision", "-")
        labels = "-" if row.trained_until_label_id is None else str(row.trained_until_label_id)
        note = ("  awaiting approval" if row.awaiting_approval
                else f"  approved by {row.approved_by}" if row.approved_by else "")
        typer.echo(f"{row.version:<24} {row.status:<10} {decision:<9} {_f1(row.metrics, 'gold'):>8} "
                   f"{_f1(row.metrics, 'new_labels'):>8} {labels:>8}  {row.parent_version or '-'}{note}")


FORCE_HELP = ("Skip the test-load, e.g. when the model folder is mounted only on the consumers' hosts. Consumers "
              "still test-load it and keep serving the last good version if it is broken.")


@models_app.command("promote")
def models_promote(
    version: Annotated[str, typer.Argument(help="Version to serve.")],
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    actor: Actor = None,
) -> None:
    """Make VERSION the champion (consumers switch at their next registry poll).

    The model is test-loaded first, as the consumers serve it (FINPULSE_DEVICE, FINPULSE_PRECISION,
    FINPULSE_BACKEND), and must score a few texts with finite probabilities; a broken one is refused and the
    champion stays. Promoting a version that consumers refused clears the refusal once it loads. Promoting one
    that awaits approval approves it: its last labeller may not."""
    from monitor.core.audit import cli_principal  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.lifecycle import registry  # lazy: startup

    with _engine() as engine:
        row = registry.promote(engine, version, by=cli_principal(actor), settings=get_settings(), force=force)
    typer.echo(f"{row.version} is now champion" + (" (not test-loaded: --force)" if force else ""))


@models_app.command("rollback")
def models_rollback(force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
                    actor: Actor = None) -> None:
    """Retire the champion and serve the previous champion again (test-loaded first, as for promote)."""
    from monitor.core.audit import cli_principal  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.lifecycle import registry  # lazy: startup

    with _engine() as engine:
        row = registry.rollback(engine, by=cli_principal(actor), settings=get_settings(), force=force)
    typer.echo(f"rolled back: {row.version} is champion again")


@models_app.command("approve")
def models_approve(version: Annotated[str, typer.Argument(help="Version awaiting approval.")],
                   actor: Actor = None) -> None:
    """Four eyes: make VERSION, a retrained candidate awaiting approval (FINPULSE_RETRAIN_PROMOTION=approve),
    the champion. Refused when the approver labelled the newest data it was trained on; test-loaded first."""
    from monitor.core.audit import cli_principal  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.lifecycle import registry  # lazy: startup

    by = cli_principal(actor)
    with _engine() as engine:
        row = registry.approve(engine, version, by=by, settings=get_settings())
    typer.echo(f"{row.version} approved by {by.name}; it is now champion")


def register(app: typer.Typer) -> None:
    app.command("retrain")(retrain_command)
    app.command("scheduler")(scheduler_command)
    app.command("drift")(drift_command)
    app.add_typer(models_app, name="models")
