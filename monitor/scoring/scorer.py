"""Scores texts with a model directory: dynamic padding, length-sorted sub-batches, inference mode, bf16.

A model directory is either finpulse's own multi-task model (``finpulse_model.json`` says ``"kind":
"multitask"``; decoded by :mod:`monitor.scoring.multitask`) or any transformers sequence-classification directory whose
labels name negative / neutral / positive. Only safetensors weights are loaded: no pickle, no remote code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BatchEncoding, PreTrainedTokenizerBase

from finetune.device import resolve_device, resolve_dtype
from finetune.model_dir import check_model_dir, read_manifest
from monitor.core.errors import ConfigError, ModelLoadError
from monitor.scoring.backends import candidates, describe, race
from monitor.scoring.cashtags import cashtag_entities
from monitor.scoring.multitask import load_backend as load_multitask
from monitor.scoring.multitask import load_onnx_multitask
from schemas.prediction import SENTIMENT_LABELS, Prediction

log = logging.getLogger(__name__)

DTYPE_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}  # autocast dtype -> precision
_LABEL_ALIASES = {
    "negative": 0, "neg": 0, "bearish": 0,
    "neutral": 1, "neu": 1,
    "positive": 2, "pos": 2, "bullish": 2,
}


class Backend(Protocol):
    """Turns one tokenized sub-batch into predictions; the scorer owns batching, device and precision."""

    def predict(self, texts: Sequence[str], encoding: BatchEncoding) -> list[Prediction]: ...


class SequenceClassificationBackend:
    """Any transformers sequence classifier with negative/neutral/positive labels."""

    def __init__(self, model: torch.nn.Module, label_index: list[int]) -> None:
        self.model = model
        self.label_index = label_index  # position of negative, neutral, positive in the logits

    @classmethod
    def load(cls, model_dir: Path, device: torch.device) -> SequenceClassificationBackend:
        model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615 # a local model folder, never the Hub
            model_dir, use_safetensors=True, trust_remote_code=False, local_files_only=True
        )
        id2label = {int(k): str(v).lower() for k, v in model.config.id2label.items()}
        index: dict[int, int] = {}
        for model_id, name in id2label.items():
            if name in _LABEL_ALIASES:
                index[_LABEL_ALIASES[name]] = model_id
        if sorted(index) != [0, 1, 2]:
            raise ModelLoadError(
                f"{model_dir}: expected labels negative/neutral/positive in config.json id2label, "
                f"found {sorted(id2label.values())}; fix id2label or train with `finpulse train`"
            )
        return cls(model.to(device).eval(), [index[0], index[1], index[2]])

    def predict(self, texts: Sequence[str], encoding: BatchEncoding) -> list[Prediction]:
        inputs = {k: v for k, v in encoding.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = self.model(**inputs).logits.float()
        probs = torch.softmax(logits[:, self.label_index], dim=-1).cpu().tolist()
        out = []
        for text, row in zip(texts, probs, strict=True):
            document = Prediction.from_probs((row[0], row[1], row[2]))
            out.append(Prediction(document.sentiment, document.probs, document.score, document.confidence,
                                  cashtag_entities(text, document)))
        return out


@dataclass
class Scorer:
    """Scores batches of texts. Not thread-safe: one scorer per consumer."""

    model_dir: Path
    version: str
    tokenizer: PreTrainedTokenizerBase
    backend: Backend
    device: torch.device
    dtype: torch.dtype | None
    batch_size: int = 32
    max_length: int = 128
    engine: str = "torch"  # torch or onnx
    precision: str = "fp32"  # what serves: fp32, bf16, fp16 or int8

    def _autocast(self) -> Any:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def tokenize(self, texts: Sequence[str]) -> BatchEncoding:
        # Lengths padded to a multiple of 8: as fast (measured), and far fewer distinct tensor shapes, so the
        # oneDNN kernel cache and the allocator settle instead of growing with every new length.
        encoding: BatchEncoding = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, pad_to_multiple_of=8,
            return_tensors="pt", return_offsets_mapping=True,
        )
        return encoding

    def score(self, texts: Sequence[str]) -> list[Prediction]:
        """Predictions in input order. Texts are sorted by length so each sub-batch pads little."""
        if not texts:
            return []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Prediction | None] = [None] * len(texts)
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                chunk_texts = [texts[i] for i in chunk]
                encoding = self.tokenize(chunk_texts).to(self.device)
                for i, prediction in zip(chunk, self.backend.predict(chunk_texts, encoding), strict=True):
                    results[i] = prediction
        return [r for r in results if r is not None]


def load_scorer(
    model_dir: Path,
    *,
    device: str = "auto",
    precision: str = "auto",
    backend: str = "torch",
    batch_size: int = 32,
    max_length: int = 128,
) -> Scorer:
    """Load ``model_dir`` on the engine that ``backend`` and ``precision`` pick (see :mod:`monitor.scoring.backends`)
    and smoke-test it on one text; raises :class:`ModelLoadError` or :class:`ConfigError` with the fix."""
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    torch_device = resolve_device(device)
    engines, why = candidates(model_dir, backend, precision, torch_device.type)
    loaders = {engine: partial(_load_engine, model_dir, engine, torch_device, precision, batch_size, max_length)
               for engine in engines}
    if len(loaders) == 1:
        scorer: Scorer = loaders[engines[0]]()
        log.info("loaded model %s from %s: %s %s on %s (%s)", scorer.version, model_dir, scorer.engine,
                 scorer.precision, torch_device, why)
        return scorer
    best, scorers, speed = race(loaders)
    scorer = scorers[best]
    log.info("loaded model %s from %s: backend auto chose %s %s: %s", scorer.version, model_dir, scorer.engine,
             scorer.precision, describe(speed, {name: f"{s.engine} {s.precision}" for name, s in scorers.items()}))
    return scorer


def _load_engine(model_dir: Path, engine: str, torch_device: torch.device, precision: str, batch_size: int,
                 max_length: int) -> Scorer:
    manifest = read_manifest(model_dir)
    dtype = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # a local model folder; never the Hub
            model_dir, trust_remote_code=False, local_files_only=True)
        backend: Backend
        if engine == "onnx":
            backend, served = load_onnx_multitask(model_dir, precision, threads=torch.get_num_threads())
        else:
            if precision == "int8":  # auto fell back to torch (CUDA, no onnxruntime, not a multi-task model)
                log.warning("FINPULSE_PRECISION=int8 is an ONNX Runtime precision; torch serves %s in its automatic "
                            "precision instead", model_dir.name)
            dtype = resolve_dtype("auto" if precision == "int8" else precision, torch_device)
            served = DTYPE_NAMES[dtype]
            if manifest.get("kind") == "multitask":
                backend = load_multitask(model_dir, torch_device)
            else:
                backend = SequenceClassificationBackend.load(model_dir, torch_device)
    except (ModelLoadError, ConfigError):
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ModelLoadError(f"{model_dir}: could not load model ({type(error).__name__}: {error})") from None
    scorer = Scorer(
        model_dir=model_dir,
        version=str(manifest.get("version") or model_dir.name),
        tokenizer=tokenizer,
        backend=backend,
        device=torch_device if engine == "torch" else torch.device("cpu"),
        dtype=dtype,
        batch_size=batch_size,
        max_length=max_length,
        engine=engine,
        precision=served,
    )
    try:
        smoke = scorer.score(["Smoke test: $ACME shares rise after results."])
    except Exception as error:  # noqa: BLE001  (onnxruntime's run errors share no base but Exception)
        raise ModelLoadError(f"{model_dir}: the {engine} smoke test failed ({type(error).__name__}: "
                             f"{str(error)[:200]}); the model is not usable") from None
    if len(smoke) != 1 or smoke[0].sentiment not in SENTIMENT_LABELS:
        raise ModelLoadError(f"{model_dir}: smoke check failed (got {smoke!r}); the model is not usable")
    return scorer
