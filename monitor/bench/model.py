"""The model side of ``finpulse bench``: which model, the model-only ceiling, precision and int8 side by side.

Model choice: ``--model DIR``, else ``FINPULSE_MODEL_DIR``, else the registry's champion, else a small demo model
trained once on the bundled sample corpus into ``var/bench/models/demo`` and reused afterwards.

Model-only throughput scores pre-loaded texts with the consumer's own :class:`~monitor.scoring.scorer.Scorer` in the
consumer's micro-batches (``batch_max_messages`` texts per ``score()`` call), so it is the ceiling the streaming
path can reach. Variants are timed in alternating rounds so that load from other processes hits each about equally.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.exc import SQLAlchemyError

from finetune.args import TrainArgs
from finetune.data.sources import ColumnDefaults, DataSpec, load_sources
from finetune.data.splits import subsample
from finetune.evaluate import evaluate
from finetune.model_dir import read_manifest
from finetune.onnx_model import onnxruntime_available
from finetune.train import train
from monitor.bench.probe import significant
from monitor.core import db
from monitor.core.cpus import usable_cores
from monitor.core.errors import FinpulseError
from monitor.core.settings import Settings
from monitor.scoring.champion import champion
from monitor.scoring.multitask import load_onnx_multitask
from monitor.scoring.scorer import Scorer, load_scorer

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "var" / "bench" / "models"
DEMO_VERSION = "demo"
TFNS_VALID = Path("data") / "tfns" / "sent_valid.csv"


def demo_model(models_dir: Path = DEMO_DIR) -> Path:
    """The demo model (multi-task, trained on ``finetune/sample_data/train.jsonl``), trained on first use."""
    target = models_dir / DEMO_VERSION
    if (target / "model.safetensors").is_file():
        return target

    log.info("no model given and no champion: training the demo model into %s (once, about a minute)", target)
    args = TrainArgs(data=[f"finpulse={REPO / 'finetune' / 'sample_data' / 'train.jsonl'}"], models_dir=str(models_dir),
                     version=DEMO_VERSION, epochs=3, max_length=64, database_url="none", register=False,
                     progress=False)
    return train(args).path


def resolve_model(model: Path | None, settings: Settings) -> tuple[Path, str]:
    """(directory, how it was chosen)."""
    if model is not None:
        return model, "--model"
    if settings.model_dir is not None:
        return settings.model_dir, "FINPULSE_MODEL_DIR"
    try:
        from sqlalchemy.engine import make_url

        url = make_url(settings.database_url)
        if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
            return demo_model(), "demo model (trained on the bundled sample corpus)"  # creating a database: no
        engine = db.make_engine(settings.database_url)
        try:
            db.require_migrated(engine)
            row = champion(engine)
        finally:
            engine.dispose()
        if row is not None:
            path = Path(row.path)
            path = path if path.is_absolute() or path.exists() else settings.models_dir / path
            return path, f"champion {row.version}"
    except (FinpulseError, SQLAlchemyError) as error:  # no usable registry: fall through to the demo model
        log.info("no registry champion (%s)", error)
    return demo_model(), "demo model (trained on the bundled sample corpus)"


def make_scorer(model_dir: Path, settings: Settings, precision: str | None = None,
                backend: str | None = None) -> Scorer:
    return load_scorer(model_dir, device=settings.device, precision=precision or settings.precision,
                       backend=backend or settings.backend, batch_size=settings.score_batch_size,
                       max_length=settings.max_seq_length)


def score_all(scorer: Scorer, texts: list[str], micro_batch: int) -> float:
    """Seconds to score ``texts`` in calls of ``micro_batch`` texts (as the consumer calls the scorer)."""
    started = time.perf_counter()
    for start in range(0, len(texts), micro_batch):
        scorer.score(texts[start:start + micro_batch])
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def interleaved(variants: dict[str, Callable[[], float]], count: int, rounds: int) -> dict[str, float]:
    """Median messages/s of each variant over ``rounds`` alternating rounds (one warm-up round first)."""
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for round_no in range(rounds + 1):
        for name, run in variants.items():
            seconds = run()
            if round_no:  # round 0 warms caches, oneDNN kernels and the allocator
                timings[name].append(count / seconds)
    return {name: round(statistics.median(values), 2) for name, values in timings.items()}


def quantized(scorer: Scorer) -> Scorer:
    """A copy of ``scorer`` with dynamic int8 Linear layers (fp32 activations). Measured only, never served."""
    backend = copy.copy(scorer.backend)
    model = backend.model  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        backend.model = torch.ao.quantization.quantize_dynamic(  # type: ignore[attr-defined,no-untyped-call]
            copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    return dataclasses.replace(scorer, backend=backend, dtype=None)


def onnx_variant(scorer: Scorer, precision: str, threads: int) -> Scorer | None:
    """``scorer``'s model on ONNX Runtime at ``precision`` and ``threads``; None where it cannot run here (no
    onnxruntime, not a multi-task model, or no int8 export because its gate refused it)."""
    if scorer.device.type != "cpu" or not onnxruntime_available() or \
            read_manifest(scorer.model_dir).get("kind") != "multitask":
        return None
    backend, served = load_onnx_multitask(scorer.model_dir, precision, threads)
    if served != precision:
        return None
    return dataclasses.replace(scorer, backend=backend, dtype=None, engine="onnx", precision=served)


def precision_variants(scorer: Scorer, int8: bool) -> dict[str, Scorer]:
    """torch fp32 and bf16 (and torch dynamic int8), ONNX Runtime fp32 and int8 at the scoring thread count, and
    ONNX int8 on every core when that differs."""
    torch_scorer = scorer if scorer.engine == "torch" else load_scorer(
        scorer.model_dir, device=str(scorer.device), precision="fp32", backend="torch",
        batch_size=scorer.batch_size, max_length=scorer.max_length)
    out = {"fp32": dataclasses.replace(torch_scorer, dtype=None, precision="fp32"),
           "bf16": dataclasses.replace(torch_scorer, dtype=torch.bfloat16, precision="bf16")}
    if int8 and torch_scorer.device.type == "cpu":
        out["int8-dynamic"] = quantized(torch_scorer)
    threads, cores = torch.get_num_threads(), usable_cores()
    onnx = [("onnx-fp32", "fp32", threads), ("onnx-int8", "int8", threads)]
    if cores != threads:
        onnx.append((f"onnx-int8-{cores}t", "int8", cores))
    for name, precision, n in onnx:
        variant = onnx_variant(torch_scorer, precision, n)
        if variant is not None:
            out[name] = variant
    return out


def compare_precision(scorer: Scorer, texts: list[str], micro_batch: int, rounds: int,
                      int8: bool = True) -> dict[str, Any]:
    """Model-only messages/s of fp32, bf16 autocast (and dynamic int8) side by side, with ratios to fp32."""
    variants = precision_variants(scorer, int8)
    rates = interleaved({name: functools.partial(score_all, s, texts, micro_batch) for name, s in variants.items()},
                        len(texts), rounds)
    ratios = {f"{name}_vs_fp32": significant(rate / rates["fp32"]) for name, rate in rates.items() if name != "fp32"}
    return {"texts": len(texts), "rounds": rounds, "msgs_per_s": rates, **ratios}


def quality(model_dir: Path, scorer: Scorer, repo: Path = REPO, limit: int | None = None) -> dict[str, Any]:
    """Sentiment macro-F1 on TFNS valid (0=negative, 1=positive, 2=neutral) of each precision variant."""
    path = repo.parent / "shared" / TFNS_VALID
    if not path.is_file():
        return {"skipped": f"{path} not found"}

    examples = subsample(load_sources([DataSpec.parse(f"tfns={path}")], ColumnDefaults("text", "label", None)),
                         limit, 0)
    out: dict[str, Any] = {"data": str(path), "examples": len(examples), "macro_f1": {}}
    for name, variant in precision_variants(scorer, int8=True).items():
        model = variant.backend.model  # type: ignore[attr-defined]
        metrics = evaluate(model, scorer.tokenizer, examples, max_length=scorer.max_length,
                           batch_size=scorer.batch_size, dtype=variant.dtype)
        out["macro_f1"][name] = round(float(metrics["sentiment"]["macro_f1"]), 4)
    base = out["macro_f1"]["fp32"]
    out["drop_vs_fp32"] = {k: round(base - v, 4) for k, v in out["macro_f1"].items() if k != "fp32"}
    return out
