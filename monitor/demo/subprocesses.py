"""Child processes that cannot outlive their parent (the demo's broker and dashboard).

Each child runs in its own session (process group), so a terminal's Ctrl-C reaches only the parent, which then
stops the children in order (clients first, the broker last) instead of all of them dying at once. On Linux a
parent-death signal covers the case where the parent itself is killed hard (SIGKILL, OOM): the kernel sends the
child SIGTERM, so nothing is left behind holding a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Loaded before any fork: the function that runs in the child must not load libraries or allocate much.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with(parent_pid: int) -> Callable[[], None]:
    def set_parent_death_signal() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return set_parent_death_signal


def child_options() -> dict[str, Any]:
    """``subprocess.Popen`` keyword arguments for a child in its own process group that dies with this process.

    Call from the main thread: the kernel sends the parent-death signal when the *thread* that forked exits.
    """
    options: dict[str, Any] = {"start_new_session": True}
    if _LIBC is not None:
        options["preexec_fn"] = _die_with(os.getpid())
    return options


def stop_group(process: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    """SIGTERM the child's process group, wait up to ``timeout_s``, then SIGKILL it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("process %d did not stop within %.0f s; killing it", process.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the child's process group at once (the second Ctrl-C)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
