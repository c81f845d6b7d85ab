"""Which engine scores on this host: torch or ONNX Runtime, and at which precision (``FINPULSE_BACKEND``,
``FINPULSE_PRECISION``).

* ``torch``: the torch model, in bf16 where the CPU has native bf16 kernels (or on CUDA), else fp32.
* ``onnx``: the ONNX export on ONNX Runtime, int8 when the version's int8 passed its quality gate at training,
  else fp32. A version without an export gets its fp32 export made on first load.
* ``auto`` (default): on a CUDA device, torch. On a CPU, both engines are loaded and timed on the same few batches
  side by side, and the faster one serves; the log says which and the speeds. Without ``onnxruntime`` installed,
  or for a model that is not a finpulse multi-task model, torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from finetune.device import cpu_flags
from finetune.model_dir import read_manifest
from finetune.onnx_model import onnxruntime_available
from monitor.core.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

TORCH_PRECISIONS = ("auto", "bf16", "fp32")
ONNX_PRECISIONS = ("auto", "int8", "fp32")
# A fixed workload for the start-up race: headline-length texts, two batches per engine per round.
PROBE_TEXTS = [
    "Acme Corp shares jump 12% after quarterly revenue beats estimates",
    "Regulators open an investigation into Beta Bank's lending practices",
    "$XYZ guidance cut as supply chain costs weigh on margins",
    "Gamma Holdings names new chief executive, stock little changed",
] * 16


def check_choice(backend: str, precision: str) -> None:
    """A one-line ConfigError for a backend/precision pair that cannot run."""
    if backend == "torch" and precision not in TORCH_PRECISIONS:
        raise ConfigError(f"FINPULSE_PRECISION={precision} needs FINPULSE_BACKEND=onnx or auto (torch serves "
                          f"{', '.join(TORCH_PRECISIONS)})")
    if backend == "onnx" and precision not in ONNX_PRECISIONS:
        raise ConfigError(f"FINPULSE_PRECISION={precision} needs FINPULSE_BACKEND=torch or auto (ONNX Runtime "
                          f"serves {', '.join(ONNX_PRECISIONS)})")


def candidates(model_dir: Path, backend: str, precision: str, device: str) -> tuple[list[str], str]:
    """The engines to consider, and why."""
    check_choice(backend, precision)
    if backend != "auto":
        return [backend], f"FINPULSE_BACKEND={backend}"
    if device == "cuda":
        return ["torch"], "a CUDA device serves with torch"
    if read_manifest(model_dir).get("kind") != "multitask":
        return ["torch"], "ONNX export covers finpulse multi-task models only"
    if not onnxruntime_available():
        return ["torch"], "onnxruntime is not installed (pip install onnxruntime)"
    if precision == "bf16":
        return ["torch"], "FINPULSE_PRECISION=bf16 is a torch precision"
    if precision == "int8":
        return ["onnx"], "FINPULSE_PRECISION=int8 is an ONNX Runtime precision"
    return ["torch", "onnx"], "timed on this host"


def race(loaders: Mapping[str, Callable[[], Any]], rounds: int = 2) -> tuple[str, dict[str, Any], dict[str, float]]:
    """Load every candidate and time ``score(PROBE_TEXTS)`` alternately; return the fastest, all the loaded
    scorers and the messages per second of each (best round)."""
    scorers, failed = {}, []
    for name, load in loaders.items():
        try:
            scorers[name] = load()
        except ModelLoadError as error:  # e.g. no export and a read-only model directory: the others still race
            log.warning("backend auto: %s cannot serve this model (%s)", name, error)
            failed.append(error)
    if not scorers:
        raise failed[-1]
    speed = dict.fromkeys(scorers, 0.0)
    for scorer in scorers.values():
        scorer.score(PROBE_TEXTS[:8])  # warm-up: first calls allocate and pick kernels
    for _ in range(rounds):
        for name, scorer in scorers.items():
            started = time.perf_counter()
            scorer.score(PROBE_TEXTS)
            speed[name] = max(speed[name], len(PROBE_TEXTS) / (time.perf_counter() - started))
    best = max(speed, key=lambda name: speed[name])
    return best, scorers, speed


def describe(speed: dict[str, float], labels: dict[str, str]) -> str:
    flags = ",".join(cpu_flags()) or "no avx2/avx512 flags"
    return " vs ".join(f"{labels[name]} {rate:.0f} msg/s" for name, rate in
                       sorted(speed.items(), key=lambda item: -item[1])) + f" (CPU: {flags})"
