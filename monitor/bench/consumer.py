"""Worker process of ``finpulse bench``: the real consumer (:class:`monitor.stream.consumer.NewsConsumer`), observed.

``python -m monitor.bench.consumer JOB.json`` reads ``{"settings": {...}, "max_messages": N, "out": PATH,
"per_row": bool}``, consumes until N messages were handled (or, with ``stop_file``, until that file appears), and
writes to ``out``: per-batch commit times (and each inserted row's commit time with ``per_row``), RSS samples (for
the soak report), CPU seconds per thread and the peak RSS of this process. With ``ready_file`` and ``go_file`` it
loads its model, says so, and waits for the go before it joins the group, so that several workers join in one
rebalance. The consumer runs in its own process so its memory is measured alone and the benchmark's producer does
not share its interpreter (GIL).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from monitor.bench.probe import CommitRecorder, RssSampler, peak_rss_kib, rss_kib, thread_cpu_s, worker_main
from monitor.core.settings import load_settings
from monitor.stream.consumer import NewsConsumer

log = logging.getLogger(__name__)

GO_TIMEOUT_S = 600.0


def _stop_when(path: Path, consumer: NewsConsumer) -> None:
    while not path.exists():
        time.sleep(0.1)
    consumer.stop()


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    settings = load_settings(**job["settings"])
    recorder = CommitRecorder(per_row=bool(job.get("per_row", False)))
    started = time.monotonic()
    consumer = NewsConsumer(settings, max_messages=int(job["max_messages"]), idle_exit_s=job.get("idle_exit_s"),
                            observers=[recorder])
    if job.get("ready_file"):
        Path(job["ready_file"]).touch()
        go, deadline = Path(job["go_file"]), time.monotonic() + GO_TIMEOUT_S
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    if job.get("stop_file"):
        threading.Thread(target=_stop_when, args=(Path(job["stop_file"]), consumer), name="bench-stop",
                         daemon=True).start()
    loaded = time.monotonic()
    rss_after_load = rss_kib()
    sampler = RssSampler(lambda: consumer.summary.messages, float(job.get("rss_interval_s", 0.5))).start()
    try:
        summary = consumer.run()
    finally:
        sampler.stop()
    return {
        "messages": summary.messages, "inserted": summary.inserted, "dead_lettered": summary.dead_lettered,
        "batch_count": summary.batches, "load_s": round(loaded - started, 2),
        "run_s": round(time.monotonic() - loaded, 2), "commits": recorder.commits, "batches": recorder.batches,
        "rss_samples": sampler.samples, "rss_after_load_kib": rss_after_load, "peak_rss_kib": peak_rss_kib(),
        "torch_threads": torch.get_num_threads(), "process_cpu_s": round(time.process_time(), 2),
        "thread_cpu_s": {**sampler.thread_cpu, **thread_cpu_s()},
    }


if __name__ == "__main__":
    sys.exit(worker_main(run_job, sys.argv[1:]))
