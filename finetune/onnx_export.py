"""ONNX export of the multi-task model, and int8 only under a quality gate.

Two graphs go into the version directory, next to ``model.safetensors``:

* ``model.onnx``: the encoder and the document and NER heads (inputs ``input_ids``, ``attention_mask``,
  ``token_type_ids`` and, for a model that reads casing, ``casing_ids``, with dynamic batch and sequence axes;
  outputs ``sentiment``, ``ner``, ``hidden``, ``pooled``);
* ``entity_head.onnx``: the entity-sentiment head over the same pass's ``hidden`` and ``pooled`` and the spans
  that NER found (``span_index``), so entities and their sentiment still come from one encoder pass.

``model.int8.onnx`` (dynamic quantization, int8 weights) is kept only when, on the model's own validation data,
sentiment macro-F1, NER F1 and entity-sentiment macro-F1 each drop by at most ``MAX_DROP`` against the fp32 ONNX
graph; otherwise it is deleted and the gate's reason is recorded. Every file is written under a temporary name and
renamed, and its SHA-256 goes into the manifest, which the loader checks.

The exporter is torch's dynamo exporter (``onnxscript``): the TorchScript exporter mistraces the attention of
current transformers BERT models (outputs off by 0.3), the dynamo one agrees with torch to 1e-6. The graph is traced
through transformers' eager attention (plain MatMul/Softmax), not its SDPA path: the same numbers, and ONNX Runtime
runs that graph faster, 15 % in int8 (StockNet tweets, MiniLM-L6, batches of 32, one thread; `finpulse bench`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetune.casing import CASING_INPUT
from finetune.evaluate import evaluate, evaluate_dir
from finetune.examples import Example
from finetune.model import MultitaskModel
from finetune.model_dir import read_manifest, write_manifest
from finetune.onnx_model import ENTITY_HEAD, INPUTS, ONNX_FP32, ONNX_INT8, OnnxMultitaskModel, serves_int8, sha256
from monitor.core.errors import ModelLoadError

log = logging.getLogger(__name__)

MAX_DROP = 0.005
GATED = (("sentiment", "macro_f1"), ("ner", "f1"), ("entity_sentiment", "macro_f1"))


class _EncoderGraph(torch.nn.Module):
    def __init__(self, model: MultitaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor,
                casing_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask, None, token_type_ids, casing_ids)
        return out.sentiment, out.ner, out.hidden, out.pooled


class _EntityHeadGraph(torch.nn.Module):
    def __init__(self, model: MultitaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, hidden: torch.Tensor, pooled: torch.Tensor, span_index: torch.Tensor) -> torch.Tensor:
        return self.model.span_logits(hidden, pooled, span_index)


def _temporary(target: Path) -> Path:
    # Unique per writer: replicas share the models volume and may all run as PID 1 in their containers.
    return target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")


def _publish(tmp: Path, final: Path) -> dict[str, str]:
    """Hash and fsync the finished temporary file, then rename it into place (the digest is of what we wrote)."""
    digest = sha256(tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    return {"file": final.name, "sha256": digest}


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]],
            dynamic: dict[str, dict[int, Any]] | tuple[dict[int, Any], ...], target: Path) -> dict[str, str]:
    tmp = _temporary(target)
    exporter_log = logging.getLogger("torch.onnx")
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # its graph passes log every step at INFO
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about every optional op library (torchvision) it lacks
    try:
        with warnings.catch_warnings():  # and about deprecations of its own internals
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp), input_names=names[0], output_names=names[1],
                              dynamic_shapes=dynamic, dynamo=True, external_data=False, verbose=False)
        return _publish(tmp, target)
    finally:
        exporter_log.setLevel(level)
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _eager_attention(model: MultitaskModel) -> Iterator[None]:
    """Trace attention as plain MatMul/Softmax (transformers' "eager" path); the model is left as it was."""
    config = model.encoder.config
    before = getattr(config, "_attn_implementation", None)
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = before


def export_fp32(model: MultitaskModel, model_dir: Path) -> dict[str, Any]:
    """Write ``model.onnx`` and ``entity_head.onnx`` (fp32, on the CPU) into ``model_dir``; return their files
    and checksums for the manifest."""
    model = model.float().cpu().eval()
    batch, tokens = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("tokens", min=2, max=4096)
    spans = torch.export.Dim("spans", min=1, max=65536)
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2002, 102, 0]])
    mask = (ids != 0).long()
    inputs: tuple[torch.Tensor, ...] = (ids, mask, torch.zeros_like(ids))
    names = list(INPUTS)
    if model.reads_casing:  # a fourth input; other models' graphs keep the three
        inputs, names = (*inputs, torch.tensor([[0, 3, 1, 0], [0, 4, 0, 0]])), [*names, CASING_INPUT]
    with torch.no_grad(), _eager_attention(model):
        out = model(*inputs[:2], None, *inputs[2:])
        encoder = _export(_EncoderGraph(model), inputs, (names, ["sentiment", "ner", "hidden", "pooled"]),
                          tuple({0: batch, 1: tokens} for _ in names), model_dir / ONNX_FP32)
        head = _export(_EntityHeadGraph(model), (out.hidden, out.pooled, torch.tensor([[0, 1, 3], [1, 1, 2]])),
                       (["hidden", "pooled", "span_index"], ["entity"]),
                       {"hidden": {0: batch, 1: tokens}, "pooled": {0: batch}, "span_index": {0: spans}},
                       model_dir / ENTITY_HEAD)
    return {"fp32": encoder, "entity_head": head}


def _matmul_roles(path: Path) -> dict[str, str]:
    """Each weight MatMul of the encoder graph by role, from its weight's shape (in, out): ``ffn_in`` widens,
    ``ffn_out`` narrows back, ``head`` has a handful of outputs, ``attention`` keeps the width."""
    import onnx  # lazy: only when exporting

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    roles = {}
    for node in graph.node:
        weight = next((shapes[name] for name in node.input if name in shapes and len(shapes[name]) == 2), None)
        if node.op_type == "MatMul" and weight is not None:
            rows, cols = weight
            roles[node.name] = ("head" if cols < 32 else "ffn_in" if cols > rows else
                                "ffn_out" if rows > cols else "attention")
    return roles


# Tried in order, most quantized (fastest) first; the first that passes the gate is kept. The task heads always
# stay fp32: they are a rounding error of the compute, and quantizing them cost the MiniLM quality-benchmark model
# 0.008 sentiment and 0.015 entity macro-F1, while every encoder MatMul in int8 with fp32 heads stayed within 0.004
# of fp32 on its three held-out test sets (`finpulse eval --backend onnx`). The inputs of the FFN output layers
# (after GELU) have the widest activation ranges (max/rms up to 90 in layers 0-3), so the fallbacks keep those fp32.
RECIPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("encoder", ("attention", "ffn_in", "ffn_out")),
    ("attention+ffn-in", ("attention", "ffn_in")),
    ("ffn-in", ("ffn_in",)),
)


def quantize_int8(model_dir: Path, roles: tuple[str, ...]) -> dict[str, str]:
    """Dynamic int8 quantization of the MatMuls of ``model.onnx`` with these roles (int8 weights per output
    channel, activations quantized at run time); the rest stays fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # lazy: only when exporting

    source, target = model_dir / ONNX_FP32, model_dir / ONNX_INT8
    keep_fp32 = [name for name, role in _matmul_roles(source).items() if role not in roles]
    tmp = _temporary(target)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a pre-processing hint on the root logger at every call
    try:
        quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep_fp32)
        return _publish(tmp, target)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)


def gate(fp32: dict[str, Any], int8: dict[str, Any], max_drop: float = MAX_DROP) -> dict[str, Any]:
    """Pass when no gated metric that the validation data measures drops by more than ``max_drop``."""
    drops = {}
    for task, key in GATED:
        if key in fp32.get(task, {}) and key in int8.get(task, {}):
            drops[f"{task}_{key}"] = round(float(fp32[task][key]) - float(int8[task][key]), 6)
    failed = {name: drop for name, drop in drops.items() if drop > max_drop}
    if not drops:
        reason = "no validation data labels a gated task, so int8 cannot be judged"
    elif failed:
        reason = "int8 loses " + ", ".join(f"{name} {drop:.4f}" for name, drop in failed.items()) + \
            f" (more than {max_drop}) on the validation data"
    else:
        reason = f"int8 within {max_drop} of fp32 on every gated metric"
    return {"passed": bool(drops) and not failed, "reason": reason, "drops": drops, "max_drop": max_drop}


def export_serving(model: MultitaskModel, tokenizer: PreTrainedTokenizerBase, model_dir: Path,
                   validation: Sequence[Example], *, max_length: int, batch_size: int = 64,
                   max_drop: float = MAX_DROP) -> dict[str, Any]:
    """Export fp32, then try the int8 recipes in order and keep the first that passes the gate on ``validation``;
    returns what the manifest and metrics.json record (every recipe tried, with its metrics)."""
    info = export_fp32(model, model_dir)

    def measure(precision: str) -> dict[str, Any]:
        model = OnnxMultitaskModel.load(model_dir, info, precision)
        return evaluate(model, tokenizer, validation, max_length=max_length, batch_size=batch_size)

    fp32 = measure("fp32")
    tried, kept = [], None
    for recipe, roles in RECIPES if validation else ():
        try:
            info["int8"] = {**quantize_int8(model_dir, roles), "recipe": recipe}
            int8 = measure("int8")
        except Exception as error:  # noqa: BLE001 # int8 is optional: a recipe the quantizer cannot build (its
            # shape inference failed on another onnx/torch build) is refused like one that loses quality
            failure = f"quantization failed: {type(error).__name__}: {str(error)[:200]}"
            log.warning("ONNX int8 recipe %s could not be built (%s); trying the next", recipe, failure)
            (model_dir / ONNX_INT8).unlink(missing_ok=True)
            tried.append({"recipe": recipe, "passed": False, "reason": failure, "drops": {}, "max_drop": max_drop,
                          "metrics": {}})
            continue
        tried.append({"recipe": recipe, **gate(fp32, int8, max_drop), "metrics": int8})
        if tried[-1]["passed"]:
            kept = tried[-1]
            break
    if kept is None:
        (model_dir / ONNX_INT8).unlink(missing_ok=True)
        info["int8"] = None
        last = tried[-1] if tried else gate(fp32, {}, max_drop)
        reason = f"no int8 recipe kept quality ({last['reason']}); serving fp32" if tried else last["reason"]
        info["int8_gate"] = {"passed": False, "reason": reason, "drops": last.get("drops", {}), "max_drop": max_drop}
    else:
        info["int8_gate"] = {k: kept[k] for k in ("passed", "drops", "max_drop")}
        info["int8_gate"]["reason"] = f"{kept['recipe']}: {kept['reason']}"
    info["int8_gate"]["recipes"] = [{k: v for k, v in t.items() if k != "metrics"} for t in tried]
    info["validation"] = {"fp32": fp32, **{f"int8:{t['recipe']}": t["metrics"] for t in tried}}
    version = model_dir.name.lstrip(".").removesuffix(".tmp")  # training exports into the hidden staging folder
    log.log(logging.INFO if info["int8_gate"]["passed"] else logging.WARNING, "ONNX export of %s: %s", version,
            info["int8_gate"]["reason"])
    return info


def ensure_fp32_export(model_dir: Path) -> dict[str, Any]:
    """The manifest's ONNX record, exporting fp32 first when the directory has none (an older or foreign-trained
    version). Without validation data no int8 is made: only a gated int8 is ever served. Consumers that find the
    same version without an export at the same time take turns on a lock file: one exports, the others read."""
    def recorded(manifest: dict[str, Any]) -> bool:
        return bool(manifest.get("onnx", {}).get("fp32")) and (model_dir / ONNX_FP32).is_file()

    manifest = read_manifest(model_dir)
    if recorded(manifest):
        return dict(manifest["onnx"])
    try:
        with (model_dir / ".onnx-export.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            manifest = read_manifest(model_dir)  # another process may have exported while we waited
            if recorded(manifest):
                return dict(manifest["onnx"])
            log.info("%s has no ONNX export; exporting fp32 now (once)", model_dir)
            info = export_fp32(MultitaskModel.load(model_dir), model_dir)
            info["int8"] = None
            info["int8_gate"] = {"passed": False, "reason": "exported at serving time, without validation data to "
                                 "gate int8", "drops": {}, "max_drop": MAX_DROP}
            write_manifest(model_dir, {**manifest, "onnx": info})
            return info
    except OSError as error:
        raise ModelLoadError(f"{model_dir}: cannot write the ONNX export ({error}); run `finpulse train` with a "
                             "writable models directory or set FINPULSE_BACKEND=torch") from None


def evaluate_onnx_dir(model_dir: Path, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
                      max_length: int, batch_size: int, threads: int = 1) -> dict[str, Any]:
    """Metrics of the ONNX export as it would serve: fp32, and int8 when its gate passed (``finpulse eval
    --backend onnx``)."""
    info = ensure_fp32_export(model_dir)
    served = ["fp32", "int8"] if serves_int8(info) else ["fp32"]
    return {"int8_gate": info.get("int8_gate") or {}, "served": served[-1], **{
        precision: evaluate(OnnxMultitaskModel.load(model_dir, info, precision, threads), tokenizer, examples,
                            max_length=max_length, batch_size=batch_size) for precision in served}}


def compare_with_torch(model_dir: Path, examples: Sequence[Example], *, max_length: int,
                       batch_size: int) -> dict[str, Any]:
    """torch fp32 metrics with the ONNX export's beside them and the drop of each gated metric."""
    report = evaluate_dir(model_dir, examples, device="cpu", precision="fp32", max_length=max_length,
                          batch_size=batch_size)
    tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # a local model folder; never the Hub
        model_dir, trust_remote_code=False, local_files_only=True)
    onnx = evaluate_onnx_dir(model_dir, tokenizer, examples, max_length=max_length, batch_size=batch_size)
    drops = {precision: {f"{task}_{key}": round(float(report[task][key]) - float(onnx[precision][task][key]), 6)
                         for task, key in GATED if key in report.get(task, {})}
             for precision in ("fp32", "int8") if precision in onnx}
    return {**report, "backend": "onnx", "onnx": onnx, "drop_vs_torch_fp32": drops}
