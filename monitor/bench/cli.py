"""``finpulse bench`` (registered in monitor.app); the work is in :mod:`monitor.bench.run`, imported when run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def bench(
    messages: Annotated[int | None, typer.Option(min=2, help="Messages the end-to-end phase drains (default 2000; "
                                                            "100,000 with --soak).")] = None,
    naive_messages: Annotated[int | None, typer.Option(min=2, help="Messages of each naive baseline run "
                                                                   "(default: min(--messages, 150)).")] = None,
    naive: Annotated[bool, typer.Option(help="Run the naive baselines.")] = True,
    latency: Annotated[bool, typer.Option(help="Run the latency phase.")] = True,
    model_texts: Annotated[int, typer.Option(min=1, help="Texts per model-only measurement.")] = 512,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Micro-batch size (default: "
                                                               "FINPULSE_BATCH_MAX_MESSAGES).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: FINPULSE_DEVICE).")] = None,
    model: Annotated[Path | None, typer.Option(help="Model directory (default: FINPULSE_MODEL_DIR, the registry "
                                                    "champion, else a demo model trained once into var/bench).")]
    = None,
    database_url: Annotated[str | None, typer.Option(help="Database to write to, e.g. a PostgreSQL URL (default: "
                                                          "a fresh SQLite file per phase).")] = None,
    latency_seconds: Annotated[float, typer.Option(min=1, help="Duration of the latency phase.")] = 30.0,
    latency_rate: Annotated[float | None, typer.Option(min=0.1, help="Offered load of the latency phase, msgs/s "
                                                                     "(default: half the end-to-end rate).")] = None,
    compare_precision: Annotated[bool, typer.Option(help="Time fp32, bf16 and dynamic int8 side by side.")] = True,
    quality: Annotated[bool, typer.Option(help="Also measure TFNS-valid macro-F1 per precision (needs "
                                               "../shared/data; minutes).")] = False,
    soak: Annotated[bool, typer.Option(help="Long run (100,000 messages unless --messages is given): reports "
                                            "consumer RSS in the first vs last quarter; skips naive and latency.")]
    = False,
    rounds: Annotated[int, typer.Option(min=1, help="Alternating rounds of the precision comparison.")] = 2,
    e2e_rounds: Annotated[int, typer.Option(min=1, help="End-to-end rounds, each between two model-only runs "
                                                        "(--soak: 1).")] = 3,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Logs and scratch databases (default var/bench/run-ID).")]
    = None,
    keep: Annotated[bool, typer.Option(help="Keep the scratch SQLite databases.")] = False,
) -> None:
    """Measure model-only vs end-to-end vs naive throughput, latency and memory; print a table (and --out JSON)."""
    from monitor.bench.run import BenchOptions, run, write_report  # lazy: torch

    options = BenchOptions(messages=messages, naive_messages=naive_messages, model_texts=model_texts,
                           batch_size=batch_size, device=device, model=model, database_url=database_url,
                           latency_seconds=latency_seconds, latency_rate=latency_rate,
                           compare_precision=compare_precision, naive=naive, latency=latency, quality=quality,
                           soak=soak, rounds=rounds, e2e_rounds=e2e_rounds, workdir=workdir, keep=keep)
    report = run(options)
    typer.echo(write_report(report, out))
