"""Hardware choices shared by training and serving: the device, the autocast precision and the CPU threads.

CPUs differ: oneDNN has native bf16 kernels on AVX512-BF16/AMX hosts (bf16 about 3x fp32 there) and emulates them
on AVX2-only hosts (about 8x slower), so ``precision="auto"`` asks the host rather than assuming.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch

from monitor.core.cpus import usable_cores
from monitor.core.errors import ModelLoadError


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but torch sees no CUDA GPU; set FINPULSE_DEVICE=cpu or auto")
    return torch.device(device)


def cpu_supports_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 or AMX); elsewhere bf16 emulation is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def configure_threads() -> int:
    """Set torch's intra-op CPU threads (process-wide) for scoring and return the number.

    ``OMP_NUM_THREADS``, when set, is the operator's (or ``finpulse consume``'s) choice and is applied, also when
    torch was imported before it was set. Otherwise: the usable cores minus one, at least one. The consumer scores
    a batch on one thread while its main thread writes the previous batch and polls the next, and torch's OpenMP
    workers spin-wait at every operator, so a pool as large as the machine stalls whenever any other thread or
    process takes a core. Measured with ``finpulse bench`` on a shared 2-core host: one thread scored ~3x faster
    than two, and single-message scoring up to 15x. (A lone ``finpulse consume`` process on an idle host does
    better on every core: it sets ``OMP_NUM_THREADS`` itself, see ``monitor.cli.supervise``.)
    """
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    if chosen and not chosen.isdigit():
        return torch.get_num_threads()  # not a plain count: leave it to the OpenMP runtime, as it read it
    threads = int(chosen) if chosen and int(chosen) > 0 else max(1, usable_cores() - 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> list[str]:
    """The CPU features that decide bf16 and int8 speed (from /proc/cpuinfo; empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in RELEVANT_FLAGS if flag in present]
    except OSError:
        pass
    return []


def training_precision(serving: str) -> Literal["auto", "bf16", "fp32"]:
    """The training precision for a serving one: int8 is a serving-only (ONNX) precision, so it trains in auto."""
    if serving == "bf16":
        return "bf16"
    return "fp32" if serving == "fp32" else "auto"
