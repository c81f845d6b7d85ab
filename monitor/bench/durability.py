"""``finpulse bench sqlite``: what SQLite ``synchronous=FULL`` (the default of :func:`monitor.core.db.make_engine`,
so that a power loss cannot drop a batch whose offsets are committed) costs against ``NORMAL``.

Both arms write the same batches of scored rows through the consumer's own sink
(:class:`~monitor.stream.sink.NewsSink` with the real :class:`~monitor.signals.buckets.SignalWriter`: dedup, mentions
and signal buckets in the same transaction), one transaction per batch, into a fresh migrated SQLite file in WAL
mode. The NORMAL arm is ``make_engine``'s engine plus a connect listener that runs ``PRAGMA synchronous=NORMAL``
after the default pragmas; each arm reads the pragma in force back. The arms alternate (NORMAL then FULL, then
FULL then NORMAL, ...) so that background load hits both; medians of the rounds are reported. What an fsync costs
depends on the disk under the work folder, so its file system is printed too.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from finetune.device import cpu_flags
from monitor.bench.run import cpu_model
from monitor.core import db
from monitor.core.cpus import usable_cores
from monitor.core.settings import get_settings
from monitor.signals.buckets import SignalWriter
from monitor.stream.sink import NewsSink
from schemas.news import News

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MODES = ("NORMAL", "FULL")
PRAGMA_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "JPM", "XOM", "ACME", "BRK.B", "META", "GOOGL", "NFLX")
LABELS = (("positive", 0.1, 0.2, 0.7), ("neutral", 0.2, 0.6, 0.2), ("negative", 0.7, 0.2, 0.1))


@dataclass
class SqliteOptions:
    batches: int = 200
    batch_rows: int = 64
    rounds: int = 5
    workdir: Path | None = None
    keep: bool = False


def scored_batch(number: int, size: int, prefix: str) -> list[News]:
    """``size`` scored rows as the consumer stores them (distinct headlines, one or two tickers, a minute apart)."""
    start = datetime(2024, 3, 1, 9, 30, tzinfo=UTC) + timedelta(minutes=number)
    out = []
    for i in range(size):
        offset = number * size + i
        label, negative, neutral, positive = LABELS[offset % len(LABELS)]
        tickers = [TICKERS[offset % len(TICKERS)], *([TICKERS[(offset + 5) % len(TICKERS)]] if i % 3 == 0 else [])]
        at = start + timedelta(seconds=i * 60 / size)
        out.append(News(id=f"{prefix}-{offset}", source="wire", published_at=at,
                        headline=f"{tickers[0]} story {offset}: guidance update {i}", tickers=tickers,
                        kafka_topic="bench.sqlite", kafka_partition=offset % 4, kafka_offset=offset,
                        sentiment=label, p_negative=negative, p_neutral=neutral, p_positive=positive,
                        score=positive - negative, confidence=max(negative, neutral, positive),
                        entities=[{"text": t, "type": "TICKER"} for t in tickers], model_version="bench",
                        ingested_at=at, scored_at=at))
    return out


def engine_for(url: str, mode: str) -> Engine:
    engine = db.make_engine(url)
    if mode != "FULL":
        def relax(dbapi_connection: Any, _record: Any) -> None:  # runs after make_engine's own pragmas
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA synchronous={mode}")
            cursor.close()

        event.listen(engine, "connect", relax)
    return engine


def write_batches(url: str, mode: str, options: SqliteOptions, prefix: str) -> dict[str, Any]:
    """Seconds to write every batch through the sink (one transaction each) under ``PRAGMA synchronous=mode``."""
    db.upgrade(url)
    engine = engine_for(url, mode)
    try:
        with engine.connect() as connection:
            in_force = PRAGMA_NAMES.get(int(connection.execute(text("PRAGMA synchronous")).scalar_one()), "?")
        sink = NewsSink(engine, signals=SignalWriter(get_settings()))
        batches = [scored_batch(n, options.batch_rows, prefix) for n in range(options.batches)]
        commit_ms = []
        started = time.perf_counter()
        for batch in batches:
            before = time.perf_counter()
            for row in batch:
                sink.add(row)
            stored = len(sink.flush().inserted)
            commit_ms.append((time.perf_counter() - before) * 1000)
            if stored != len(batch):
                raise RuntimeError(f"bench sqlite: {stored} of {len(batch)} rows stored")
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    rows = options.batches * options.batch_rows
    return {"mode": mode, "pragma": in_force, "rows": rows, "seconds": round(seconds, 3),
            "rows_per_s": round(rows / seconds, 1), "batch_ms_p50": round(statistics.median(commit_ms), 2)}


def file_system(path: Path) -> str:
    """The file system type and mount point holding ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    best = ("unknown", "")
    try:
        for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
            _, mount, kind, *_ = line.split()
            if (str(path.resolve()) + "/").startswith(mount.rstrip("/") + "/") and len(mount) >= len(best[1]):
                best = (kind, mount)
    except OSError:
        pass
    return f"{best[0]} at {best[1] or '?'}"


def fsync_ms(folder: Path, count: int = 50) -> float:
    """Median milliseconds of writing 4 KiB and fsync-ing it in ``folder``: the price FULL pays per commit."""
    path, times = folder / "fsync.probe", []
    with path.open("wb") as handle:
        for _ in range(count):
            handle.write(b"x" * 4096)
            handle.flush()
            before = time.perf_counter()
            os.fsync(handle.fileno())
            times.append((time.perf_counter() - before) * 1000)
    path.unlink()
    return round(statistics.median(times), 3)


def run_sqlite(options: SqliteOptions) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    workdir = options.workdir or REPO / "var" / "bench" / f"sqlite-{run_id}"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for number in range(options.rounds):
        for mode in MODES if number % 2 == 0 else MODES[::-1]:
            path = workdir / f"{mode.lower()}-{number}.db"
            runs[mode].append(write_batches(f"sqlite:///{path}", mode, options, f"s{run_id}"))
            if not options.keep:
                for leftover in workdir.glob(f"{path.name}*"):
                    leftover.unlink()
    summary = {mode: {"rows_per_s": statistics.median(r["rows_per_s"] for r in results),
                      "batch_ms_p50": statistics.median(r["batch_ms_p50"] for r in results),
                      "pragma": results[0]["pragma"], "rounds": results}
               for mode, results in runs.items()}
    return {"command": "finpulse bench sqlite", "batches": options.batches, "batch_rows": options.batch_rows,
            "rounds": options.rounds, "workdir": str(workdir), "file_system": file_system(workdir),
            "fsync_ms_p50": fsync_ms(workdir),
            "results": summary,
            "full_vs_normal": round(summary["FULL"]["rows_per_s"] / summary["NORMAL"]["rows_per_s"], 3),
            "cpu": cpu_model(), "cores": usable_cores(), "cpu_flags": cpu_flags(),
            "seconds": round(time.monotonic() - started, 1)}


def sqlite_table(report: dict[str, Any]) -> str:
    lines = [f"finpulse bench sqlite: {report['batches']} batches of {report['batch_rows']} scored rows through "
             f"NewsSink + SignalWriter, one transaction per batch, WAL; median of {report['rounds']} alternating "
             "round(s)",
             f"database files in {report['workdir']} ({report['file_system']}; one 4 KiB write + fsync there: "
             f"{report['fsync_ms_p50']:.2f} ms at the median)",
             f"CPU {report['cpu']}, {report['cores']} usable cores, flags {','.join(report['cpu_flags']) or '-'}",
             "", f"{'PRAGMA synchronous':<22}{'rows/s':>10}{'ms/batch p50':>14}  per round (rows/s)"]
    for mode, result in report["results"].items():
        per_round = ", ".join(f"{r['rows_per_s']:.0f}" for r in result["rounds"])
        label = f"{mode} (in force: {result['pragma']})"
        lines.append(f"{label:<22}{result['rows_per_s']:>10.0f}{result['batch_ms_p50']:>14.2f}  {per_round}")
    ratio, results = report["full_vs_normal"], report["results"]
    extra_ms = results["FULL"]["batch_ms_p50"] - results["NORMAL"]["batch_ms_p50"]
    verdict = f"FULL {abs(1 - ratio):.0%} {'slower' if ratio < 1 else 'faster'}"
    lines += ["", f"FULL / NORMAL rows/s: {ratio:.2f}x ({verdict}; {extra_ms:+.2f} ms per batch at the median)",
              f"took {report['seconds']:.0f} s"]
    return "\n".join(lines)
