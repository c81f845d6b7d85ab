"""The one CLI, ``finpulse``. Each subcommand imports its heavy modules lazily so ``--help`` stays fast."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Annotated

import typer

from dashboards.cli import dashboard_app  # imports only typer; streamlit loads in its own process
from finetune.cli import register as register_finetune  # imports only typer; torch loads in the commands
from monitor.alerts_cli import alerts_app  # imports only typer; the database loads inside the commands
from monitor.bench_cli import bench  # imports only typer; torch loads inside the command
from monitor.config_cli import config_app  # imports only typer; settings load inside the commands
from monitor.demo import demo  # imports only typer; everything else loads inside the command
from monitor.errors import FinpulseError
from monitor.logs import setup_logging
from monitor.retrain_cli import register as register_retraining  # imports only typer
from monitor.stream_cli import consume, replay

app = typer.Typer(
    name="finpulse",
    help="Streaming financial-news sentiment and risk monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
register_finetune(app)  # train, eval, train-bench
app.add_typer(config_app, name="config")
app.command()(consume)
app.command()(replay)
app.command()(bench)
app.add_typer(dashboard_app, name="dashboard")
app.add_typer(alerts_app, name="alerts")
register_retraining(app)  # retrain, scheduler, drift, models
app.command()(demo)


@app.callback()
def _root(
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR (default: settings).")] = None,
) -> None:
    from monitor.settings import get_settings

    setup_logging(log_level or get_settings().log_level)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from monitor import db
    from monitor.settings import get_settings

    url = get_settings().database_url
    db.upgrade(url, revision)
    typer.echo(f"database at {db.current_revision(db.make_engine(url))} (head {db.head_revision()})")


@db_app.command("current")
def db_current() -> None:
    """Print the database's migration revision and the code's head."""
    from monitor import db
    from monitor.settings import get_settings

    engine = db.make_engine(get_settings().database_url)
    typer.echo(f"current {db.current_revision(engine) or 'none'}, head {db.head_revision()}")


@app.command()
def broker(
    port: Annotated[int | None, typer.Option(help="Port (default: FINPULSE_BROKER_PORT).")] = None,
    partitions: Annotated[int | None, typer.Option(min=1, help="Partitions per topic (default: settings).")] = None,
) -> None:
    """Run the embedded Kafka-compatible broker (tansu) and create the configured topics. Ctrl-C stops it."""
    from monitor.broker import EmbeddedBroker, create_topics
    from monitor.settings import get_settings

    settings = get_settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedBroker(port or settings.broker_port) as embedded:
        create_topics(embedded.bootstrap, settings.kafka_topics, partitions or settings.kafka_partitions)
        typer.echo(f"broker ready on {embedded.bootstrap}; topics {', '.join(settings.kafka_topics)} "
                   f"({partitions or settings.kafka_partitions} partitions). Ctrl-C stops it.")
        while not stop.wait(0.5):
            if embedded.process is None or embedded.process.poll() is not None:
                raise FinpulseError("the tansu broker exited unexpectedly")
    typer.echo("broker stopped")


def main() -> None:
    """Entry point: a known error prints one line and exits 2 instead of a traceback."""
    try:
        app()
    except FinpulseError as error:
        logging.getLogger("finpulse").debug("error detail", exc_info=True)
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
