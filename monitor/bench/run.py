"""``finpulse bench``: model-only ceiling, end-to-end streaming, a naive baseline, latency and memory in one run.

Everything uses the same machine, model, data and settings. On a shared machine the background load drifts, so
the compared things are measured side by side: model-only runs alternate with end-to-end rounds (each round a
fresh consumer process draining its share of the messages), and the precision variants alternate too. Then the
naive baselines and the latency phase at a fixed offered load (default: half the measured end-to-end rate).
``--soak`` runs one long end-to-end round (100,000 messages by default) and reports the consumer's RSS in the first
vs the last quarter of the run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from finetune.device import configure_threads, cpu_flags
from monitor.bench.data import DataSource, find_source, load_messages, texts_of
from monitor.bench.e2e import Stage, drain, drain_naive, latency
from monitor.bench.model import compare_precision, make_scorer, quality, resolve_model, score_all
from monitor.bench.probe import significant
from monitor.bench.report import table
from monitor.bench.scratch import drop_phase_databases
from monitor.cli.supervise import default_processes, lone_process_threads
from monitor.core.cpus import usable_cores
from monitor.core.errors import ConfigError
from monitor.core.settings import Settings, get_settings
from monitor.scoring.scorer import Scorer
from monitor.stream.broker import EmbeddedBroker
from schemas.news import NewsIn

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MESSAGES = 2000
NAIVE_MESSAGES = 150
PRECISION_TEXTS = 256
SOAK_MESSAGES = 100_000


@dataclass
class BenchOptions:
    messages: int | None = None  # default DEFAULT_MESSAGES, or SOAK_MESSAGES with soak
    naive_messages: int | None = None  # default min(messages, NAIVE_MESSAGES)
    model_texts: int = 512
    batch_size: int | None = None
    device: str | None = None
    model: Path | None = None
    database_url: str | None = None
    latency_seconds: float = 30.0
    latency_rate: float | None = None  # messages/s; default half the end-to-end rate
    compare_precision: bool = True
    naive: bool = True
    latency: bool = True
    quality: bool = False
    soak: bool = False
    layouts: bool = True
    rounds: int = 2
    e2e_rounds: int = 3
    workdir: Path | None = None
    keep: bool = False


def bench_settings(options: BenchOptions) -> Settings:
    overrides: dict[str, Any] = {}
    if options.batch_size:
        overrides["batch_max_messages"] = options.batch_size
    if options.device:
        overrides["device"] = options.device
    base = get_settings()
    return base.model_copy(update=overrides) if overrides else base


def worker_settings(settings: Settings, model_dir: Path, scorer: Scorer) -> dict[str, Any]:
    """What every worker process is told explicitly; the rest comes from the same environment. The engine and
    precision are the ones the model-only phase measured, so the workers do not race the engines again."""
    return {"model_dir": str(model_dir.resolve()), "device": settings.device, "precision": scorer.precision,
            "backend": scorer.engine,
            "batch_max_messages": settings.batch_max_messages,
            "kafka_session_timeout_ms": 4000, "stats_interval_s": 3600.0}


def streaming_rounds(stage: Stage, scorer: Scorer, texts: list[str], micro: int, messages: list[NewsIn],
                     rounds: int) -> dict[str, Any]:
    """Model-only, then per round an end-to-end drain of ``1/rounds`` of the messages followed by model-only
    again: both see the same background load. Rates are totals over all rounds (messages / seconds)."""
    model_seconds = [score_all(scorer, texts, micro)]
    runs: list[dict[str, Any]] = []
    size = math.ceil(len(messages) / rounds)
    for number in range(rounds):
        runs.append(drain(stage, f"e2e{number + 1}", messages[number * size:][:size]))
        model_seconds.append(score_all(scorer, texts, micro))
    model_rates = [len(texts) / seconds for seconds in model_seconds]
    ceiling = len(texts) * len(model_seconds) / sum(model_seconds)
    window_s = sum(run["window_s"] for run in runs)
    e2e_rate = sum(run["window_rows"] for run in runs) / window_s if window_s > 0 else 0.0
    longest = max(runs, key=lambda run: run["messages"])
    e2e = {
        "msgs_per_s": round(e2e_rate, 2), "messages": sum(run["messages"] for run in runs),
        "rounds": [{k: v for k, v in run.items() if k != "rss"} for run in runs],
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs), "torch_threads": longest["torch_threads"],
        "batches": sum(run["batches"] for run in runs), "rss": longest["rss"],
    }
    e2e["mean_batch"] = round(sum(run["inserted"] for run in runs) / max(1, e2e["batches"]), 1)
    paired = [run["msgs_per_s"] / ((model_rates[i] + model_rates[i + 1]) / 2) for i, run in enumerate(runs)]
    return {
        "model_only": {"msgs_per_s": round(ceiling, 2), "runs": [round(r, 2) for r in model_rates],
                       "texts": len(texts)},
        "end_to_end": e2e,
        "ratios": {"e2e_vs_model_only": significant(e2e_rate / ceiling),
                   "e2e_vs_model_only_per_round": [significant(r) for r in paired]},
    }


def run(options: BenchOptions) -> dict[str, Any]:
    total = options.messages or (SOAK_MESSAGES if options.soak else DEFAULT_MESSAGES)
    if total < 2:
        raise ConfigError(f"--messages must be at least 2, got {total}")
    rounds = 1 if options.soak else max(1, min(options.e2e_rounds, total // 2))
    settings = bench_settings(options)
    threads = configure_threads()
    model_dir, model_origin = resolve_model(options.model, settings)
    source: DataSource = find_source(REPO)
    run_id = uuid.uuid4().hex[:8]
    workdir = options.workdir or REPO / "var" / "bench" / f"run-{run_id}"
    workdir.mkdir(parents=True, exist_ok=True)
    micro = settings.batch_max_messages
    started = time.monotonic()

    scorer = make_scorer(model_dir, settings)
    messages = load_messages(source, total, f"b{run_id}e")
    texts = texts_of(messages[:options.model_texts], settings.body_max_chars)
    score_all(scorer, texts[:micro], micro)  # warm-up
    report: dict[str, Any] = {
        "command": "finpulse bench", "data": source.describe(), "model": str(model_dir), "model_origin": model_origin,
        "model_version": scorer.version, "device": str(scorer.device), "engine": scorer.engine,
        "precision": scorer.precision, "cpu_flags": cpu_flags(),
        "torch_threads": threads, "batch_max_messages": micro, "score_batch_size": settings.score_batch_size,
        "batch_max_wait_ms": settings.batch_max_wait_ms, "cpu": cpu_model(), "cores": usable_cores(),
        "database": f"{shown(options.database_url)} (a fresh schema or file per phase)"
        if options.database_url else "sqlite (fresh file per phase)", "messages": len(messages),
    }
    with EmbeddedBroker(log_file=workdir / "tansu.log") as broker:
        stage = Stage(broker.bootstrap, workdir, run_id, worker_settings(settings, model_dir, scorer),
                      settings.kafka_partitions, options.database_url)
        report.update(streaming_rounds(stage, scorer, texts, micro, messages, rounds))
        e2e_rate = report["end_to_end"]["msgs_per_s"]
        if options.layouts and not options.soak and usable_cores() > 1:
            report["layouts"] = compare_layouts(stage, messages[:math.ceil(len(messages) / rounds)], threads,
                                                report["end_to_end"])
        # What `finpulse consume` runs by default: the rate the naive consumers are compared with.
        processes = 1 if options.soak else default_processes(settings.consumer_processes, settings.device)
        if options.soak or os.environ.get("OMP_NUM_THREADS"):  # the operator's choice holds for consume too
            per_process = threads
        else:
            per_process = 1 if processes > 1 else (lone_process_threads(settings.device) or threads)
        layout = f"{processes}x{per_process}"
        if layout != f"1x{threads}":
            if layout not in report.get("layouts", {}).get("msgs_per_s", {}):
                part = messages[:math.ceil(len(messages) / rounds)]
                rate = drain(stage, f"layout-{layout}", part, processes, per_process)["msgs_per_s"]
                report.setdefault("layouts", {"msgs_per_s": {}, "best": layout})["msgs_per_s"][layout] = rate
            e2e_rate = report["layouts"]["msgs_per_s"][layout]
        report["default_layout"] = {"processes": processes, "threads": per_process, "msgs_per_s": e2e_rate}
        if options.compare_precision:
            report["precision_comparison"] = compare_precision(scorer, texts[:PRECISION_TEXTS], micro,
                                                               options.rounds)
        if options.quality:
            report["quality"] = quality(model_dir, scorer)
        if options.naive and not options.soak:
            count = options.naive_messages or min(total, NAIVE_MESSAGES)
            variants = [(phase, load_messages(source, count, f"b{run_id}{tag}"), mode)
                        for phase, tag, mode in (("naive", "n", "torch-default"),
                                                 ("naive_consumer_threads", "c", "consumer"))]
            for phase, result in drain_naive(stage, variants).items():
                report[phase] = result
                rate = result["msgs_per_s"]
                report["ratios"][f"e2e_vs_{phase}"] = significant(e2e_rate / rate) if rate else None
        if options.latency and not options.soak:
            rate = options.latency_rate or e2e_rate / 2
            if rate <= 0:
                raise ConfigError("the end-to-end phases drained too few batches to measure a rate for the latency "
                                  "phase; raise --messages or give --latency-rate")
            count = max(20, math.ceil(rate * options.latency_seconds))
            warmup = load_messages(source, 2 * micro, f"b{run_id}w")
            report["latency"] = latency(stage, warmup, load_messages(source, count, f"b{run_id}l"), rate,
                                        processes)
    report["seconds"] = round(time.monotonic() - started, 1)
    if not options.keep:
        for path in workdir.glob("*.db*"):
            path.unlink()
        drop_phase_databases(options.database_url, stage.urls.values())
    report["workdir"] = str(workdir)
    return report


def compare_layouts(stage: Stage, messages: list[NewsIn], threads: int, e2e: dict[str, Any]) -> dict[str, Any]:
    """How best to use every core end to end: the default (one process, ``threads`` scoring threads) against one
    process scoring on all cores and against one process per core, each draining the same messages."""
    cores = usable_cores()
    rates = {f"1x{threads}": e2e["msgs_per_s"]}
    for processes, per_process in ((1, cores), (cores, 1)):
        name = f"{processes}x{per_process}"
        if name not in rates:
            rates[name] = drain(stage, f"layout-{name}", messages, processes, per_process)["msgs_per_s"]
    best = max(rates, key=lambda name: rates[name])
    return {"msgs_per_s": rates, "best": best, "cores": cores,
            "note": f"processes x scoring threads per process; 1x{threads} is the end-to-end phase above"}


def shown(url: str) -> str:
    """``url`` fit for a report: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


def cpu_model() -> str:
    """``lscpu``'s model name, from /proc/cpuinfo (Linux); the platform's processor string elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_report(report: dict[str, Any], out: Path | None) -> str:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return table(report)
