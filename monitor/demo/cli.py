"""``finpulse demo``: the command's options; the run itself is :mod:`monitor.demo.run`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer


def demo(
    model: Annotated[Path | None, typer.Option(exists=True, file_okay=False, help="Serve this model directory "
                                               "(skips training).")] = None,
    dashboard: Annotated[bool, typer.Option(help="Start the dashboard.")] = True,
    duration: Annotated[float | None, typer.Option(min=1, help="Stop by itself after this many seconds of "
                                                              "streaming. Default: until Ctrl-C.")] = None,
    rate: Annotated[float, typer.Option(min=0, help="News per second; 0 = as fast as possible.")] = 2.0,
    history: Annotated[float, typer.Option(min=0, help="Minutes of past news (RATE per second) sent first, so the "
                                                       "charts start with a history; 0 = none.")] = 30.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many news (everything else keeps "
                                                          "running). Default: loop over the file.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Broker port (default: "
                                                                    "FINPULSE_BROKER_PORT).")] = None,
    dashboard_port: Annotated[int | None, typer.Option(min=1, max=65535, help="Dashboard port (default: "
                                                                              "FINPULSE_DASHBOARD_PORT).")] = None,
    address: Annotated[str, typer.Option(help="Dashboard interface; 0.0.0.0 for all.")] = "127.0.0.1",
    file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="CSV or JSON-lines news to replay "
                                              "(default: the StockNet tweets in ../shared/data when present, "
                                              "else the bundled sample corpus).")] = None,
    logs: Annotated[Path, typer.Option(help="Folder for the broker's and the dashboard's logs.")] = Path("var/demo"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the components' INFO logs.")] = False,
) -> None:
    """Run everything locally: migrations, example rules, a model (trained if needed), broker, consumer, a live
    news stream and the dashboard. Ctrl-C stops it all."""
    from monitor.core.settings import get_settings  # lazy: startup

    if not verbose:  # the demo prints its own status; kafka-python warns of slow polls whenever CPUs are busy
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("kafka").setLevel(logging.ERROR)
    settings = get_settings()
    options = {"model": model, "dashboard": dashboard, "duration": duration, "rate": rate, "limit": limit,
               "history": history,
               "port": port or settings.broker_port, "dashboard_port": dashboard_port or settings.dashboard_port,
               "address": address, "file": file, "logs": logs, "verbose": verbose}
    from monitor.demo.run import Demo  # lazy: torch

    code = Demo(options).run()
    if code:
        raise typer.Exit(code)
