"""``finpulse broker``: the embedded Kafka-compatible broker (tansu) for the demo, tests and trials."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from monitor.core.errors import FinpulseError


def broker(
    port: Annotated[int | None, typer.Option(help="Port (default: FINPULSE_BROKER_PORT).")] = None,
    partitions: Annotated[int | None, typer.Option(min=1, help="Partitions per topic (default: settings).")] = None,
) -> None:
    """Run the embedded Kafka-compatible broker (tansu) and create the configured topics. Ctrl-C stops it."""
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.stream.broker import EmbeddedBroker, create_topics  # lazy: startup

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
