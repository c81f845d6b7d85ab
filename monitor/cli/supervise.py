"""`finpulse consume` on every core: one consumer process per core (``FINPULSE_CONSUMER_PROCESSES=0``, the default),
each scoring on one thread.

Why processes: measured with `finpulse bench` (its layouts phase, 4,000 StockNet messages, idle 2-core host), two
processes with one scoring thread each drained 94 msgs/s end to end, one process 67 with one scoring thread and 68
with two. The consumer's own thread (poll, validate, write, signals, commit) is busy about as long as the model per
message, so a second process overlaps a second pair; no GIL, OpenMP pool or ONNX Runtime pool is shared.

The children are fresh interpreters running `finpulse consume` with ``FINPULSE_CONSUMER_PROCESSES=1`` (torch, ONNX
Runtime and the Kafka client are not fork-safe) and one scoring thread unless ``OMP_NUM_THREADS`` is set. They join
the same consumer group, so Kafka splits the partitions among them, and each commits its offsets after its own
database commit, exactly as a lone consumer does. With static membership each child gets its own instance id
(``<id>-<n>``). The parent forwards SIGINT/SIGTERM to every child; when a child fails, the parent stops the others
and exits with the child's code, so whatever supervises finpulse (systemd, Kubernetes, compose's restart policy)
restarts the set. On Linux the children die with the parent, so a kill -9 of the parent leaves no orphan consuming.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess  # nosec B404 # runs this interpreter's own CLI, no shell
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.core.cpus import usable_cores

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
POLL_S = 0.2


def gpu_host(device: str) -> bool:
    return device == "cuda" or (device == "auto" and Path("/dev/nvidiactl").exists())


def default_processes(configured: int, device: str) -> int:
    """``FINPULSE_CONSUMER_PROCESSES``, where 0 means one per usable core on a CPU host, one scoring thread each,
    and one on a GPU host (the GPU scores for all). One process scoring on every core drains 8-29 % more in
    ``finpulse bench`` but doubled the p99 publish-to-commit latency at the same offered load (1.89 s against
    0.89 s): a stall of any thread holds up every core's share of a forward pass. Live alerts come first, so
    the default is the per-core layout; ``FINPULSE_CONSUMER_PROCESSES=1`` picks throughput for a backlog."""
    if configured:
        return configured
    return 1 if gpu_host(device) else usable_cores()


def lone_process_threads(device: str) -> int | None:
    """Scoring threads of a consumer that runs as the only process (``FINPULSE_CONSUMER_PROCESSES=1``,
    ``--processes 1``, ``--max-messages``): every usable core on a CPU host; None (the engine's default) on a GPU
    host. ``OMP_NUM_THREADS``, when set, overrides it."""
    return None if gpu_host(device) else usable_cores()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (Linux); elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def child_env(index: int, instance_id: str | None) -> dict[str, str]:
    env = {**os.environ, "FINPULSE_CONSUMER_PROCESSES": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    if instance_id:
        env["FINPULSE_KAFKA_GROUP_INSTANCE_ID"] = f"{instance_id}-{index}"
    return env


def supervise(count: int, args: Sequence[str], instance_id: str | None = None) -> int:
    """Run ``count`` `finpulse consume` children with ``args`` until all have exited; the first failure's exit code,
    else 0."""
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    children = [subprocess.Popen(  # nosec B603 # argv of this interpreter, no shell
        [sys.executable, "-m", "monitor.app", "consume", *args], env=child_env(index, instance_id),
        preexec_fn=preexec) for index in range(count)]  # preexec: prctl only, no locks
    log.info("consuming with %d processes (pids %s)", count, ", ".join(str(c.pid) for c in children))
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    failure = 0
    while any(child.poll() is None for child in children):
        failed = [child for child in children if child.returncode not in (None, 0)]
        if failed and not failure:
            code = failed[0].returncode
            failure = code if code > 0 else 128 - code  # killed by a signal: the shell's 128 + signal number
            log.error("consumer process %d exited with %d; stopping the other %d so that they restart together",
                      failed[0].pid, failure, sum(child.poll() is None for child in children))
            if not stopping:
                forward(signal.SIGTERM, None)
        time.sleep(POLL_S)
    codes = [code if code >= 0 else 128 - code for code in (child.returncode for child in children)]
    return failure or next((code for code in codes if code != 0), 0)
