"""The exported multi-task model on ONNX Runtime, with the interface of :class:`finetune.model.MultitaskModel`.

It is called like the torch model (``model(input_ids, attention_mask, span_index, token_type_ids, casing_ids)`` returns
:class:`finetune.model.Outputs`, ``model.span_logits(...)`` scores spans), so the evaluation code and the serving
backend run it unchanged. Tensors cross to numpy without copies. Files are checked against the SHA-256 that the
manifest recorded at export: a truncated or replaced file is refused, never served.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.casing import CASING_INPUT
from finetune.model import Outputs
from monitor.core.errors import ModelLoadError

ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
ENTITY_HEAD = "entity_head.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PRECISIONS = ("fp32", "int8")


def serves_int8(info: dict[str, Any]) -> bool:
    """Whether a version's ONNX record has an int8 graph that passed its quality gate (the only int8 ever served)."""
    return bool(info.get("int8") and (info.get("int8_gate") or {}).get("passed"))


def onnxruntime_available() -> bool:
    """Whether ``import onnxruntime`` works (an optional dependency: torch serves without it)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(model_dir: Path, entry: dict[str, str] | None, what: str) -> Path:
    if not entry:
        raise ModelLoadError(f"{model_dir}: the manifest records no {what} ONNX file; re-export it")
    path = model_dir / entry["file"]
    if not path.is_file():
        raise ModelLoadError(f"{model_dir}: {entry['file']} is missing; re-export it or set FINPULSE_BACKEND=torch")
    digest = sha256(path)
    if digest != entry.get("sha256"):
        raise ModelLoadError(f"{path}: SHA-256 {digest[:12]}… does not match the manifest's "
                             f"{str(entry.get('sha256'))[:12]}…; the file is damaged or was replaced, re-export it")
    return path


class OnnxMultitaskModel(torch.nn.Module):
    """ONNX Runtime sessions for the encoder graph (fp32 or int8) and the entity head (fp32)."""

    def __init__(self, encoder: Any, head: Any, precision: str) -> None:
        super().__init__()
        self.encoder_session, self.head_session, self.precision = encoder, head, precision
        self.reads_casing = CASING_INPUT in {node.name for node in encoder.get_inputs()}
        # evaluate() asks next(model.parameters()).device: an empty parameter answers "cpu" and holds nothing.
        self.device_marker = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

    @classmethod
    def load(cls, model_dir: Path, info: dict[str, Any], precision: str, threads: int = 1) -> OnnxMultitaskModel:
        if precision not in PRECISIONS:
            raise ModelLoadError(f"ONNX precision {precision!r}: expected one of {PRECISIONS}")
        if not onnxruntime_available():
            raise ModelLoadError("onnxruntime is not installed; `pip install onnxruntime` (onnxruntime-gpu on CUDA "
                                 "hosts) or set FINPULSE_BACKEND=torch")
        import onnxruntime as ort  # lazy: optional dependency, checked above

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 1:  # idle pool threads sleep: the consumer's own thread polls and writes on the same cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        encoder_path = _verified(model_dir, info.get(precision), precision)
        head_path = _verified(model_dir, info.get("entity_head"), "entity head")
        try:
            encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
            head = ort.InferenceSession(str(head_path), options, providers=providers)
        except Exception as error:  # noqa: BLE001  (onnxruntime's pybind errors share no base but Exception)
            raise ModelLoadError(f"{encoder_path}: ONNX Runtime could not load it ({type(error).__name__}: "
                                 f"{str(error)[:200]}); re-export it or set FINPULSE_BACKEND=torch") from None
        return cls(encoder, head, precision)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, span_index: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, casing_ids: torch.Tensor | None = None) -> Outputs:
        ids = input_ids.cpu().numpy()
        feeds = {"input_ids": ids, "attention_mask": attention_mask.cpu().numpy(),
                 "token_type_ids": (token_type_ids.cpu().numpy() if token_type_ids is not None
                                    else np.zeros_like(ids))}
        if self.reads_casing:
            if casing_ids is None:
                raise ValueError("this model reads casing: pass casing_ids (finetune.casing.encoder_inputs makes them)")
            feeds[CASING_INPUT] = casing_ids.cpu().numpy()
        sentiment, ner, hidden, pooled = (torch.from_numpy(a) for a in self.encoder_session.run(None, feeds))
        if span_index is None:
            span_index = torch.zeros((0, 3), dtype=torch.long)
        return Outputs(sentiment=sentiment, ner=ner, entity=self.span_logits(hidden, pooled, span_index),
                       hidden=hidden, pooled=pooled)

    def span_logits(self, hidden: torch.Tensor, pooled: torch.Tensor, span_index: torch.Tensor) -> torch.Tensor:
        if span_index.shape[0] == 0:
            return torch.zeros((0, 3), dtype=torch.float32)
        feeds = {"hidden": hidden.float().cpu().numpy(), "pooled": pooled.float().cpu().numpy(),
                 "span_index": span_index.cpu().numpy().astype(np.int64)}
        return torch.from_numpy(self.head_session.run(None, feeds)[0])
