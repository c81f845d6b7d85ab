"""``HeapTrimmer`` gives memory that was freed but kept by glibc back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from monitor.bench.probe import rss_kib
from monitor.stream.memory import HeapTrimmer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is a glibc function")

BLOCK = 4096  # far below glibc's mmap threshold, so the blocks live on the heap and free() keeps their pages
BLOCKS = 40_000  # about 160 MiB


def _freed_heap() -> None:
    """Allocates and frees many small blocks, with one live block above them so free() cannot shrink the heap."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)  # touch the pages so they count as resident
    _freed_heap.pin = libc.malloc(BLOCK)  # type: ignore[attr-defined]
    for block in blocks:
        libc.free(block)


def _rss_mib() -> float:
    return rss_kib() / 1024


def test_trim_returns_freed_heap_pages_and_respects_its_interval() -> None:
    _freed_heap()
    idle = HeapTrimmer(interval_s=3600.0)
    before = _rss_mib()
    idle.maybe_trim()  # inside its interval: must not trim
    assert _rss_mib() > before - 20, "a trimmer inside its interval trimmed"
    HeapTrimmer(interval_s=0.0).maybe_trim()
    after = _rss_mib()
    assert before - after > 100, f"RSS {before:.0f} MiB -> {after:.0f} MiB: freed heap pages were not returned"
