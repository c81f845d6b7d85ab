"""``finpulse bench [takeover|sqlite]`` (registered in monitor.app); the work is in :mod:`monitor.bench.run`,
:mod:`monitor.bench.takeover` and :mod:`monitor.bench.durability`, imported when run."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

log = logging.getLogger(__name__)

STREAMING = "finpulse bench (streaming)"
TAKEOVER = "finpulse bench takeover"
SQLITE = "finpulse bench sqlite"
ALERTS = "finpulse bench alerts"


class Which(StrEnum):
    takeover = "takeover"
    sqlite = "sqlite"
    alerts = "alerts"


# Options of one benchmark only; --model, --rounds, --out, --workdir and --keep are shared.
ONLY = {
    None: {"messages", "naive_messages", "naive", "latency", "model_texts", "batch_size", "device", "database_url",
           "latency_seconds", "latency_rate", "compare_precision", "quality", "soak", "e2e_rounds", "layouts"},
    Which.takeover: {"quick", "scenarios", "arms", "session_ms", "short_session_ms", "rate", "bootstrap",
                     "takeover_timeout_s"},
    Which.sqlite: {"batches", "batch_rows"},
    Which.alerts: {"start", "days", "shocks", "burst", "burst_min", "alert_batch", "horizon_min", "seed", "data"},
}


def bench(
    ctx: typer.Context,
    which: Annotated[Which | None, typer.Argument(help="Nothing: the streaming benchmark (model-only vs end-to-end vs "
                                                       "naive, latency, memory). takeover: kill -9 recovery by group "
                                                       "membership and session. sqlite: cost of "
                                                       "PRAGMA synchronous=FULL vs NORMAL. alerts: shock detection, "
                                                       "time to fire and noise of the shipped alert rules.",
                                                  show_default=False)]
    = None,
    messages: Annotated[int | None, typer.Option(min=2, help="Messages the end-to-end phase drains (default 2000; "
                                                            "100,000 with --soak).", rich_help_panel=STREAMING)] = None,
    naive_messages: Annotated[int | None, typer.Option(min=2, help="Messages of each naive baseline run "
                                                                   "(default: min(--messages, 150)).",
                                                       rich_help_panel=STREAMING)] = None,
    naive: Annotated[bool, typer.Option(help="Run the naive baselines.", rich_help_panel=STREAMING)] = True,
    latency: Annotated[bool, typer.Option(help="Run the latency phase.", rich_help_panel=STREAMING)] = True,
    model_texts: Annotated[int, typer.Option(min=1, help="Texts per model-only measurement.",
                                             rich_help_panel=STREAMING)] = 512,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Micro-batch size (default: "
                                                               "FINPULSE_BATCH_MAX_MESSAGES).",
                                                   rich_help_panel=STREAMING)] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: FINPULSE_DEVICE).",
                                               rich_help_panel=STREAMING)] = None,
    model: Annotated[Path | None, typer.Option(help="Model directory (default: FINPULSE_MODEL_DIR, the registry "
                                                    "champion, else a demo model trained once into var/bench). "
                                                    "Streaming and takeover.")] = None,
    database_url: Annotated[str | None, typer.Option(help="Where the phases write: each phase gets its own schema "
                                                          "in this PostgreSQL database (or a file beside this SQLite "
                                                          "one), dropped afterwards unless --keep (default: a fresh "
                                                          "SQLite file per phase in the work folder).",
                                                     rich_help_panel=STREAMING)] = None,
    latency_seconds: Annotated[float, typer.Option(min=1, help="Duration of the latency phase.",
                                                   rich_help_panel=STREAMING)] = 30.0,
    latency_rate: Annotated[float | None, typer.Option(min=0.1, help="Offered load of the latency phase, msgs/s "
                                                                     "(default: half the end-to-end rate).",
                                                       rich_help_panel=STREAMING)] = None,
    compare_precision: Annotated[bool, typer.Option(help="Time fp32, bf16 and dynamic int8 side by side.",
                                                    rich_help_panel=STREAMING)] = True,
    quality: Annotated[bool, typer.Option(help="Also measure TFNS-valid macro-F1 per precision (needs "
                                               "../shared/data; minutes).", rich_help_panel=STREAMING)] = False,
    soak: Annotated[bool, typer.Option(help="Long run (100,000 messages unless --messages is given): reports "
                                            "consumer RSS in the first vs last quarter; skips naive and latency.",
                                       rich_help_panel=STREAMING)] = False,
    layouts: Annotated[bool, typer.Option(help="Also drain with one process scoring on every core and with one "
                                               "process per core, to compare with the default.",
                                          rich_help_panel=STREAMING)] = True,
    rounds: Annotated[int | None, typer.Option(min=1, help="Alternating rounds: of the precision comparison "
                                                           "(default 2), of the takeover trials (default 1), of "
                                                           "the sqlite arms (default 5).")] = None,
    e2e_rounds: Annotated[int, typer.Option(min=1, help="End-to-end rounds, each between two model-only runs "
                                                        "(--soak: 1).", rich_help_panel=STREAMING)] = 3,
    quick: Annotated[bool, typer.Option(help="Only the restart scenario (about 2-3 minutes).",
                                        rich_help_panel=TAKEOVER)] = False,
    scenarios: Annotated[str, typer.Option(help="Comma-separated: restart (the killed member is started again at "
                                                "once), survivor (two members; the other takes over).",
                                           rich_help_panel=TAKEOVER)] = "restart,survivor",
    arms: Annotated[str, typer.Option(help="Comma-separated: dynamic and static (FINPULSE_KAFKA_GROUP_INSTANCE_ID) "
                                           "membership at --session-ms, short (dynamic at --short-session-ms).",
                                      rich_help_panel=TAKEOVER)] = "dynamic,static,short",
    session_ms: Annotated[int, typer.Option(min=1000, help="Session timeout of the dynamic and static arms.",
                                            rich_help_panel=TAKEOVER)] = 10_000,
    short_session_ms: Annotated[int, typer.Option(min=1000, help="Session timeout of the short arm.",
                                                  rich_help_panel=TAKEOVER)] = 3_000,
    rate: Annotated[float, typer.Option(min=1, help="Messages/s published during a trial.",
                                        rich_help_panel=TAKEOVER)] = 40.0,
    bootstrap: Annotated[str | None, typer.Option(help="Use this Kafka broker instead of an embedded tansu.",
                                                  rich_help_panel=TAKEOVER)] = None,
    takeover_timeout_s: Annotated[float | None, typer.Option(min=5, help="Longest wait for a takeover (default: "
                                                                         "20 s + two of the arm's sessions); slower is "
                                                                         "reported as not taken over.",
                                                             rich_help_panel=TAKEOVER)] = None,
    batches: Annotated[int, typer.Option(min=1, help="Batches each arm writes.", rich_help_panel=SQLITE)] = 200,
    batch_rows: Annotated[int, typer.Option(min=1, help="Scored rows per batch.", rich_help_panel=SQLITE)] = 64,
    start: Annotated[str, typer.Option(help="First day of the StockNet span (YYYY-MM-DD).",
                                       rich_help_panel=ALERTS)] = "2014-01-01",
    days: Annotated[float, typer.Option(min=8, help="Days of stream replayed (the first 7 are the baseline).",
                                        rich_help_panel=ALERTS)] = 35.0,
    shocks: Annotated[int, typer.Option(min=1, help="Injected shocks of each kind (negative, positive, volume).",
                                        rich_help_panel=ALERTS)] = 8,
    burst: Annotated[int, typer.Option(min=1, help="Stories per shock.", rich_help_panel=ALERTS)] = 8,
    burst_min: Annotated[float, typer.Option(min=0, help="Minutes a shock's stories are spread over.",
                                             rich_help_panel=ALERTS)] = 10.0,
    alert_batch: Annotated[int, typer.Option(min=2, help="Batch size of the backlog replay.",
                                             rich_help_panel=ALERTS)] = 64,
    horizon_min: Annotated[float, typer.Option(min=1, help="A shock counts as detected when a rule fires on its "
                                                           "ticker within this many minutes.",
                                               rich_help_panel=ALERTS)] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed of the shock draw.", rich_help_panel=ALERTS)] = 7,
    data: Annotated[Path | None, typer.Option(help="StockNet stream CSV (default ../shared/data/stocknet_stream).",
                                              rich_help_panel=ALERTS)] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
    workdir: Annotated[Path | None, typer.Option(help="Logs and scratch databases (default var/bench/<name>-ID).")]
    = None,
    keep: Annotated[bool, typer.Option(help="Keep the scratch databases (SQLite files, PostgreSQL schemas).")] = False,
) -> None:
    """Benchmarks that print ratios measured side by side in one run, with the host's CPU flags: the streaming
    benchmark (no argument), `takeover` (kill -9 recovery) or `sqlite` (durability cost)."""
    wrong = sorted(name for other, names in ONLY.items() if other is not which for name in names
                   if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE")
    if wrong:
        raise typer.BadParameter(f"--{wrong[0].replace('_', '-')} is not an option of `finpulse bench"
                                 f"{' ' + which.value if which else ''}`")
    if which is Which.takeover:
        from monitor.bench.takeover import TakeoverOptions, run_takeover, takeover_table  # lazy: torch

        chosen = ("restart",) if quick else _names(scenarios, ("restart", "survivor"), "--scenarios")
        report = run_takeover(TakeoverOptions(
            model=model, bootstrap=bootstrap, scenarios=chosen, arms=_names(arms, ("dynamic", "static", "short"),
                                                                            "--arms"),
            session_ms=session_ms, short_session_ms=short_session_ms, rate=rate, rounds=rounds or 1,
            timeout_s=takeover_timeout_s, workdir=workdir, keep=keep))
        typer.echo(_save(report, out, takeover_table(report)))
        return
    if which is Which.sqlite:
        from monitor.bench.durability import SqliteOptions, run_sqlite, sqlite_table  # lazy: torch

        report = run_sqlite(SqliteOptions(batches=batches, batch_rows=batch_rows, rounds=rounds or 5,
                                          workdir=workdir, keep=keep))
        typer.echo(_save(report, out, sqlite_table(report)))
        return
    if which is Which.alerts:
        from monitor.bench.alerts import AlertBenchOptions, alert_table, run_alert_bench  # lazy: torch

        try:
            first = datetime.fromisoformat(start).replace(tzinfo=UTC)
        except ValueError:
            raise typer.BadParameter(f"--start: expected a date like 2014-01-01 (found {start!r})") from None
        report = run_alert_bench(AlertBenchOptions(
            model=model, start=first, days=days, shocks=shocks, burst=burst, burst_min=burst_min, batch=alert_batch,
            horizon_min=horizon_min, seed=seed, workdir=workdir, data=data))
        typer.echo(_save(report, out, alert_table(report)))
        return
    from monitor.bench.run import BenchOptions, run, write_report  # lazy: torch

    options = BenchOptions(messages=messages, naive_messages=naive_messages, model_texts=model_texts,
                           batch_size=batch_size, device=device, model=model, database_url=database_url,
                           latency_seconds=latency_seconds, latency_rate=latency_rate,
                           compare_precision=compare_precision, naive=naive, latency=latency, quality=quality,
                           soak=soak, layouts=layouts, rounds=rounds or 2, e2e_rounds=e2e_rounds, workdir=workdir,
                           keep=keep)
    typer.echo(write_report(run(options), out))


def _names(value: str, known: tuple[str, ...], option: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise typer.BadParameter(f"{option}: {', '.join(unknown) or 'nothing'} given; choose from {', '.join(known)}")
    return names


def _save(report: dict[str, Any], out: Path | None, text: str) -> str:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return text
