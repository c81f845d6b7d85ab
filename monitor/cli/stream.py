"""CLI commands of the streaming core: ``finpulse consume`` and ``finpulse replay`` (registered in monitor.app).

Heavy modules (torch, kafka) are imported inside the commands so that ``finpulse --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

log = logging.getLogger(__name__)


def consume(
    max_messages: Annotated[int | None, typer.Option(min=1, help="Stop after this many messages (benchmarks, "
                                                                 "tests). Default: run until stopped.")] = None,
    idle_exit_s: Annotated[float | None, typer.Option(min=0.1, help="Stop after this many seconds without a "
                                                                    "message while partitions are assigned. "
                                                                    "Default: never.")] = None,
    processes: Annotated[int | None, typer.Option(min=1, help="Consumer processes of one scoring thread each; a "
                                                              "lone process scores on every core (default: "
                                                              "FINPULSE_CONSUMER_PROCESSES, one per core; 1 with "
                                                              "--max-messages, which then counts per process).")]
    = None,
) -> None:
    """Score the news topic into the database. SIGTERM/Ctrl-C finish the current batch, commit and exit 0."""
    from monitor.cli.supervise import default_processes, lone_process_threads, supervise  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    settings = get_settings()
    count = processes or (1 if max_messages else default_processes(settings.consumer_processes, settings.device))
    if count > 1:
        args = [f"--max-messages={max_messages}"] if max_messages else []
        args += [f"--idle-exit-s={idle_exit_s}"] if idle_exit_s is not None else []
        raise typer.Exit(supervise(count, args, settings.kafka_group_instance_id))
    threads = lone_process_threads(settings.device)
    if threads and not os.environ.get("OMP_NUM_THREADS"):  # the children of supervise() get 1 the same way
        os.environ["OMP_NUM_THREADS"] = str(threads)

    from monitor.stream.consumer import NewsConsumer  # lazy: torch

    consumer = NewsConsumer(settings, max_messages=max_messages, idle_exit_s=idle_exit_s)

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received: finishing the current batch (send it again to stop at once)",
                 signal.Signals(signum).name)
        consumer.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # a second signal ends the process; committed offsets keep it safe

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    summary = consumer.run()
    typer.echo(summary.line())


def replay(
    file: Annotated[Path, typer.Argument(help="CSV or JSON-lines (.jsonl) file of news.")],
    rate: Annotated[float, typer.Option(min=0, help="Messages per second; 0 = as fast as possible.")] = 0.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Publish at most this many messages.")] = None,
    topic: Annotated[str | None, typer.Option(help="Topic (default: FINPULSE_KAFKA_TOPIC).")] = None,
    id_col: Annotated[str | None, typer.Option(help="Column of the news id (default: id/tweet_id/...; "
                                                    "else a hash of the content).")] = None,
    text_col: Annotated[str | None, typer.Option(help="Column of the headline (default: headline/title/text).")]
    = None,
    time_col: Annotated[str | None, typer.Option(help="Column of the publish time, ISO-8601 with zone or epoch "
                                                      "seconds (default: published_at/created_at_utc/...).")] = None,
    ticker_col: Annotated[str | None, typer.Option(help="Column of the ticker(s) (default: tickers/ticker/...).")]
    = None,
    source_col: Annotated[str | None, typer.Option(help="Column of the source (default: source/publisher).")]
    = None,
    source: Annotated[str | None, typer.Option(help="Source name when there is no source column (default: "
                                                    "the file name).")] = None,
    body_col: Annotated[str | None, typer.Option(help="Column of the body (default: body/content/summary).")]
    = None,
    restamp: Annotated[bool, typer.Option(help="Set published_at to the send time (live demos).")] = False,
    skip_bad: Annotated[bool, typer.Option(help="Skip and count bad rows instead of stopping at the first.")]
    = False,
) -> None:
    """Publish news from a file to the news topic, keyed by ticker (else id)."""
    from monitor.core.settings import get_settings  # lazy: startup
    from monitor.stream.news_file import ColumnMap  # lazy: startup
    from monitor.stream.replay import replay as run_replay  # lazy: startup

    settings = get_settings()
    columns = ColumnMap(id=id_col, headline=text_col, published_at=time_col, tickers=ticker_col,
                        source=source_col, body=body_col, source_name=source)
    result = run_replay(file, settings, topic=topic, columns=columns, rate=rate, limit=limit, restamp=restamp,
                        skip_bad=skip_bad)
    typer.echo(result.line(file, topic or settings.kafka_topic))
