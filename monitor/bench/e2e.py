"""The streaming phases of ``finpulse bench``: end-to-end throughput, the naive baseline, publish-to-commit latency.

Each phase gets a fresh topic pair and consumer group on the embedded broker and (unless ``--database-url`` is
given) a fresh migrated SQLite file, and runs its consumer in a worker process (:mod:`monitor.bench.consumer`,
:mod:`monitor.bench.naive`) whose output lands in ``<workdir>/<phase>.log``. Throughput is counted between the
first and the last database commit, so model loading and the group join are left out for both contenders.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from monitor.bench.data import make_producer, publish_all
from monitor.bench.probe import percentile, rss_quarters, steady_window
from monitor.bench.scratch import phase_database
from monitor.core import db
from monitor.core.errors import FinpulseError
from monitor.stream.broker import create_topics
from monitor.stream.replay import message_key, message_value
from schemas.news import News, NewsIn

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT_S = 3600.0


@dataclass
class Stage:
    """Where the phases run: broker, scratch folder, database, and the settings every worker gets."""

    bootstrap: str
    workdir: Path
    run_id: str
    settings: dict[str, Any]  # overrides for load_settings() in the workers
    partitions: int = 4
    database_url: str | None = None  # None: SQLite; either way a fresh database per phase (monitor.bench.scratch)
    log_level: str = "WARNING"
    urls: dict[str, str] = field(default_factory=dict)

    def prepare(self, phase: str) -> dict[str, Any]:
        """Topic pair, group and migrated database for ``phase``; returns the worker's settings overrides."""
        topic = f"bench-{self.run_id}-{phase}"
        create_topics(self.bootstrap, [topic, f"{topic}.dlq"], self.partitions)
        url = phase_database(self.database_url, self.workdir, self.run_id, phase)
        db.upgrade(url)
        self.urls[phase] = url
        return {**self.settings, "kafka_bootstrap": self.bootstrap, "kafka_security_protocol": "PLAINTEXT",
                "kafka_topic": topic, "kafka_dead_letter_topic": f"{topic}.dlq", "kafka_group_id": topic,
                "database_url": url}


def start_worker(stage: Stage, module: str, name: str, job: dict[str, Any], threads: int | None = None) -> Any:
    """Start a worker process; ``threads`` sets its OMP_NUM_THREADS (torch's and ONNX Runtime's scoring threads)."""
    job = {**job, "out": str(stage.workdir / f"{name}.out.json"), "log_level": stage.log_level}
    job_path = stage.workdir / f"{name}.job.json"
    job_path.write_text(json.dumps(job, default=str), encoding="utf-8")
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with (stage.workdir / f"{name}.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module, str(job_path)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # nosec B603 # argv of this interpreter, no shell


def finish_worker(stage: Stage, name: str, process: Any, timeout_s: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    """Wait for the worker and return its JSON result."""
    deadline = time.monotonic() + timeout_s
    log_path = stage.workdir / f"{name}.log"
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise FinpulseError(f"bench phase {name} did not finish within {timeout_s:.0f} s; see {log_path}")
        time.sleep(0.2)
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
        raise FinpulseError(f"bench phase {name} failed (exit {process.returncode}): {tail[0] if tail else ''}; "
                            f"see {log_path}")
    result: dict[str, Any] = json.loads((stage.workdir / f"{name}.out.json").read_text(encoding="utf-8"))
    return result


def summarise(result: dict[str, Any], publish_s: float) -> dict[str, Any]:
    """Throughput between the first and the last commit, memory, and timings of one drained topic."""
    rows, seconds = steady_window(result["batches"])
    return {
        "messages": result["messages"], "inserted": result["inserted"],
        "msgs_per_s": round(rows / seconds, 2) if seconds > 0 else 0.0, "window_rows": rows, "window_s": seconds,
        "batches": len(result["batches"]), "mean_batch": round(result["inserted"] / max(1, len(result["batches"])), 1),
        "peak_rss_mib": round(result["peak_rss_kib"] / 1024, 1), "load_s": result["load_s"],
        "run_s": result["run_s"], "prefill_s": round(publish_s, 2), "torch_threads": result["torch_threads"],
        "rss": rss_quarters(result["rss_samples"], result["messages"]),
        "thread_cpu_s": result.get("thread_cpu_s", {}),
    }


def drain(stage: Stage, phase: str, messages: list[NewsIn], processes: int = 1,
          threads: int | None = None) -> dict[str, Any]:
    """Pre-fill a topic with ``messages``, then let ``processes`` consumer workers (one group, ``threads`` scoring
    threads each; default: the consumer's own choice) drain it; throughput and memory."""
    settings = stage.prepare(phase)
    publish_s = publish_all(stage.bootstrap, settings["kafka_topic"], messages)
    if processes == 1:
        job = {"settings": settings, "max_messages": len(messages)}
        worker = start_worker(stage, "monitor.bench.consumer", phase, job, threads)
        return summarise(finish_worker(stage, phase, worker), publish_s)
    # Several workers: each loads its model, then all join the group together (one rebalance, not one per worker)
    # and all leave once the database holds every message; throughput counts from the first commit of any worker
    # to the last commit of any, without each worker's first batch.
    workers = start_group(stage, phase, settings, processes, threads)
    _await_stored(stage, phase, messages, workers)
    results = [finish_worker(stage, name, worker) for name, worker in workers.items()]
    merged = merge_results(results)
    if merged["messages"] < len(messages):
        raise FinpulseError(f"bench phase {phase}: {processes} workers handled {merged['messages']} of "
                            f"{len(messages)} messages; see {stage.workdir}")
    return {**summarise(merged, publish_s), "processes": processes}


def start_group(stage: Stage, phase: str, settings: dict[str, Any], processes: int, threads: int | None,
                per_row: bool = False) -> dict[str, Any]:
    """``processes`` consumer workers of one group that load their models, then join together; they stop when
    ``<phase>.stop`` appears (:func:`_await_stored` makes it)."""
    names = [f"{phase}-p{number}" for number in range(processes)]
    job = {"settings": settings, "max_messages": 10**12, "per_row": per_row,
           "go_file": str(stage.workdir / f"{phase}.go"), "stop_file": str(stage.workdir / f"{phase}.stop")}
    workers = {name: start_worker(stage, "monitor.bench.consumer", name,
                                  {**job, "ready_file": str(stage.workdir / f"{name}.ready")}, threads)
               for name in names}
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not all((stage.workdir / f"{name}.ready").exists() for name in names):
        if time.monotonic() > deadline or any(worker.poll() is not None for worker in workers.values()):
            break  # finish_worker reports the failure with the worker's log
        time.sleep(0.1)
    (stage.workdir / f"{phase}.go").touch()
    return workers


def _await_stored(stage: Stage, phase: str, messages: list[NewsIn], workers: dict[str, Any]) -> None:
    """Until the phase's database holds every message; then tell the workers to finish and leave."""
    ids, deadline = [news.id for news in messages], time.monotonic() + WORKER_TIMEOUT_S
    try:
        while _stored(stage.urls[phase], ids) < len(ids):
            if any(worker.poll() is not None for worker in workers.values()) or time.monotonic() > deadline:
                raise FinpulseError(f"bench phase {phase}: the consumers stopped or stalled before storing all "
                                    f"{len(ids)} messages; see the {phase}-p*.log files in {stage.workdir}")
            time.sleep(0.2)
    finally:
        (stage.workdir / f"{phase}.stop").touch()


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One worker result from several that drained one topic together: sums, the peak of the peaks, and the
    batches of all in commit order (each worker's first batch dropped, see :func:`steady_window`)."""
    later = sorted(batch for result in results for batch in result["batches"][1:])
    first = min(result["batches"][0] for result in results if result["batches"])
    return {
        "messages": sum(r["messages"] for r in results), "inserted": sum(r["inserted"] for r in results),
        "batches": [[first[0], 0], *later], "peak_rss_kib": max(r["peak_rss_kib"] for r in results),
        "load_s": max(r["load_s"] for r in results), "run_s": max(r["run_s"] for r in results),
        "torch_threads": results[0]["torch_threads"], "rss_samples": results[0]["rss_samples"],
        "thread_cpu_s": results[0].get("thread_cpu_s", {}),
    }


def drain_naive(stage: Stage, variants: list[tuple[str, list[NewsIn], str]]) -> dict[str, dict[str, Any]]:
    """Each (phase, messages, threads) variant drains its own pre-filled topic, in one naive worker process."""
    jobs, publish_s = [], []
    for phase, messages, threads in variants:
        settings = stage.prepare(phase)
        publish_s.append(publish_all(stage.bootstrap, settings["kafka_topic"], messages))
        jobs.append({"settings": settings, "max_messages": len(messages), "threads": threads})
    process = start_worker(stage, "monitor.bench.naive", "naive", {"variants": jobs})
    results = finish_worker(stage, "naive", process)["variants"]
    return {phase: summarise(result, seconds)
            for (phase, _, _), result, seconds in zip(variants, results, publish_s, strict=True)}


def _stored(url: str, ids: list[str]) -> int:
    """How many of ``ids`` the news table holds."""
    table = News.__table__  # type: ignore[attr-defined]
    engine = db.make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table).where(table.c.id.in_(ids)))
                       .scalar_one())
    finally:
        engine.dispose()


def _paced_publish(bootstrap: str, topic: str, messages: list[NewsIn], rate: float,
                   sent: dict[str, float], failures: list[str]) -> None:
    """Publish at ``rate`` messages/s (paced against the start, so sleep overshoot does not accumulate)."""
    producer = make_producer(bootstrap, linger_ms=0)
    try:
        started = time.monotonic()
        for i, news in enumerate(messages):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            sent[news.id] = now
            future = producer.send(topic, key=message_key(news), value=message_value(news),
                                   timestamp_ms=int(now * 1000))
            future.add_errback(lambda error: failures.append(str(error)))
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=30)


def latency(stage: Stage, warmup: list[NewsIn], messages: list[NewsIn], rate: float,
            processes: int = 1) -> dict[str, Any]:
    """Publish-to-commit latency at ``rate`` messages/s into ``processes`` consumer workers (one group, one scoring
    thread each when several), after ``warmup`` messages made them hot."""
    phase = "latency"
    settings = stage.prepare(phase)
    if processes == 1:
        job = {"settings": settings, "max_messages": len(warmup) + len(messages), "per_row": True}
        workers = {phase: start_worker(stage, "monitor.bench.consumer", phase, job)}
    else:
        workers = start_group(stage, phase, settings, processes, 1, per_row=True)
    publish_all(stage.bootstrap, settings["kafka_topic"], warmup)
    deadline = time.monotonic() + 600
    warm_ids = [news.id for news in warmup]
    while _stored(stage.urls[phase], warm_ids) < len(warmup):  # models loaded, group joined, first batches done
        if any(worker.poll() is not None for worker in workers.values()) or time.monotonic() > deadline:
            for name, worker in workers.items():
                finish_worker(stage, name, worker, timeout_s=1)
            raise FinpulseError("bench latency phase: the consumers did not take the warm-up messages")
        time.sleep(0.2)
    sent: dict[str, float] = {}
    failures: list[str] = []
    producer = threading.Thread(target=_paced_publish, name="bench-producer",
                                args=(stage.bootstrap, settings["kafka_topic"], messages, rate, sent, failures))
    producer.start()
    producer.join()
    if failures:
        raise FinpulseError(f"bench latency phase: {len(failures)} messages were not acknowledged ({failures[0]})")
    if processes > 1:
        _await_stored(stage, phase, warmup + messages, workers)
    results = [finish_worker(stage, name, worker) for name, worker in workers.items()]
    waits = [(committed - sent[news_id]) * 1000 for result in results for news_id, committed in result["commits"]
             if news_id in sent]
    return {
        "offered_msgs_per_s": round(rate, 2), "messages": len(waits), "processes": processes,
        "p50_ms": round(percentile(waits, 50), 1), "p95_ms": round(percentile(waits, 95), 1),
        "p99_ms": round(percentile(waits, 99), 1), "max_ms": round(max(waits), 1) if waits else None,
        "peak_rss_mib": round(max(result["peak_rss_kib"] for result in results) / 1024, 1),
    }
