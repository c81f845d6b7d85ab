"""The one CLI, ``finpulse``: the composition root that assembles every command group into one Typer app.

It is the only module that may import from every room, ``monitor.bench`` and ``monitor.demo`` included (to register
their commands); nothing imports it but the ``finpulse`` entry point. Command modules import torch-heavy code inside
their commands, so ``finpulse --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from dashboards.cli import dashboard_app  # imports only typer; streamlit loads in its own process
from monitor.bench.cli import bench  # imports only typer; torch loads inside the command
from monitor.cli.alerts import alerts_app  # imports only typer; the database loads inside the commands
from monitor.cli.audit import audit_app  # imports only typer; the database loads inside the command
from monitor.cli.broker import broker
from monitor.cli.config import config_app  # imports only typer; settings load inside the commands
from monitor.cli.data import data_app  # imports only typer; the fetch logic loads inside the command
from monitor.cli.db import db_app
from monitor.cli.health import health  # imports only typer; the checks load inside the command
from monitor.cli.retrain import register as register_retraining  # imports only typer
from monitor.cli.stream import consume, replay
from monitor.cli.train import register as register_finetune  # imports only typer; torch loads in the commands
from monitor.cli.users import users_app  # imports only typer; the database loads inside the commands
from monitor.core.db_faults import database_unreachable, is_outage
from monitor.core.errors import FinpulseError
from monitor.core.logs import setup_logging
from monitor.demo.cli import demo  # imports only typer; everything else loads inside the command

app = typer.Typer(
    name="finpulse",
    help="Streaming financial-news sentiment and risk monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_app, name="db")
register_finetune(app)  # train, eval, train-bench
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.command()(consume)
app.command()(replay)
app.command()(bench)
app.add_typer(dashboard_app, name="dashboard")
app.add_typer(alerts_app, name="alerts")
register_retraining(app)  # retrain, scheduler, drift, models
app.command()(demo)
app.command()(broker)
app.command()(health)
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")


@app.callback()
def _root(
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR (default: settings).")] = None,
) -> None:
    from monitor.core.settings import get_settings  # lazy: startup

    setup_logging(log_level or get_settings().log_level)


def main() -> None:
    """Entry point: a known error prints one line and exits 2 instead of a traceback."""
    try:
        app()
    except FinpulseError as error:
        logging.getLogger("finpulse").debug("error detail", exc_info=True)
        typer.echo(f"error: {error}", err=True)
        sys.exit(getattr(error, "exit_code", 2))  # e.g. 75 (EX_TEMPFAIL) when an outage outlasted its deadline
    except SQLAlchemyError as error:
        if not is_outage(error):
            raise
        logging.getLogger("finpulse").debug("error detail", exc_info=True)
        typer.echo(f"error: {database_unreachable(error)}", err=True)
        sys.exit(75)


if __name__ == "__main__":
    main()
