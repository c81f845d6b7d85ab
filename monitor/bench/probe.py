"""Measuring helpers shared by ``finpulse bench`` and its worker processes: memory, commit times, percentiles.

Memory is read from ``/proc/self/status`` (Linux: ``VmRSS`` now, ``VmHWM`` = peak) and falls back to
``getrusage`` elsewhere, so no extra dependency is needed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monitor.core.logs import setup_logging
from schemas.news import News

log = logging.getLogger(__name__)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kib() -> int:
    """Resident memory now (KiB)."""
    return _status_kib("VmRSS") or peak_rss_kib()


def peak_rss_kib() -> int:
    """Peak resident memory of this process (KiB)."""
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss // 1024) if sys.platform == "darwin" else int(maxrss)  # macOS reports bytes


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of each live Python thread of this process, by name (Linux; empty elsewhere)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[thread.name] = round((int(fields[11]) + int(fields[12])) / tick, 2)
    return out


class CommitRecorder:
    """A commit observer (the sink's extension point) noting when each newly inserted row became visible (wall
    clock, seconds). Observers run right after the database commit and before alert evaluation, so what it
    records is the commit time, which is what publish-to-commit latency is about.
    """

    __name__ = "bench_commit_recorder"

    def __init__(self, per_row: bool = True) -> None:
        self.per_row = per_row  # False in long runs: the list of every row would itself grow the memory measured
        self.commits: list[tuple[str, float]] = []
        self.batches: list[tuple[float, int]] = []  # (commit time, rows) per batch
        self._lock = threading.Lock()

    def __call__(self, rows: Sequence[News]) -> None:
        now = time.time()
        with self._lock:
            if self.per_row:
                self.commits.extend((row.id, now) for row in rows)
            self.batches.append((now, len(rows)))

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.commits)


class RssSampler:
    """Samples this process's RSS every ``interval_s`` with a progress count, on a daemon thread."""

    def __init__(self, progress: Callable[[], int], interval_s: float = 1.0) -> None:
        self.progress = progress
        self.interval_s = interval_s
        self.samples: list[tuple[float, int, int]] = []  # (monotonic time, messages done, rss KiB)
        self.thread_cpu: dict[str, float] = {}  # newest CPU seconds seen per thread name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append((time.monotonic(), self.progress(), rss_kib()))
            self.thread_cpu.update(thread_cpu_s())


def steady_window(batches: Sequence[Sequence[float]]) -> tuple[int, float]:
    """(rows, seconds) between the first and the last commit. The first batch's rows are not counted: its
    processing started before the first timestamp. (0, 0.0) when there are fewer than two batches."""
    if len(batches) < 2:
        return 0, 0.0
    return int(sum(n for _, n in batches[1:])), float(batches[-1][0] - batches[0][0])


def significant(value: float, digits: int = 4) -> float:
    """A ratio kept to four significant digits: fixed decimals would turn 0.1046 into 0.10, a 4 % error."""
    return float(f"{value:.{digits}g}")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rss_quarters(samples: Sequence[Sequence[float]], total: int) -> dict[str, Any]:
    """Mean RSS (MiB) while the first and the last quarter of ``total`` messages were processed, and the growth."""
    first = [s[2] for s in samples if s[1] <= total / 4]
    last = [s[2] for s in samples if s[1] >= 3 * total / 4]
    if not first or not last:
        return {"first_quarter_mib": None, "last_quarter_mib": None, "growth": None, "samples": len(samples)}
    mean_first, mean_last = sum(first) / len(first) / 1024, sum(last) / len(last) / 1024
    return {"first_quarter_mib": round(mean_first, 1), "last_quarter_mib": round(mean_last, 1),
            "growth": round(mean_last / mean_first - 1, 4), "samples": len(samples)}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: the parent reads the file only after the worker exited, but never a half-written one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def worker_main(run_job: Callable[[dict[str, Any]], dict[str, Any]], argv: Sequence[str]) -> int:
    """The ``python -m`` entry of a benchmark worker process: read the job file ``argv[0]``, log at its level, run
    the job, write its result to the job's ``out`` file."""
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    setup_logging(job.get("log_level", "WARNING"))
    write_json(Path(job["out"]), run_job(job))
    return 0
