"""Score the named test sets (``--test-data``) with the model as it is saved and served, for ``metrics.json``.

After training, the best checkpoint (LoRA merged, calibration folded into the heads) is what the version directory
holds, so its numbers are the served model's: they are measured at the serving length (FINPULSE_MAX_SEQ_LENGTH,
not the training ``--max-length``), in the torch precision serving picks on this device, and, when the version has
an ONNX export, again on ONNX Runtime in the precision that export serves (int8 only where its gate passed). Each
set gets whatever its data labels: sentiment macro-F1 with per-class recall, NER F1, entity-sentiment macro-F1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from finetune.data.testsets import EvalSet
from finetune.evaluate import AnyModel, evaluate
from finetune.onnx_model import OnnxMultitaskModel, serves_int8

log = logging.getLogger(__name__)

TASK_KEYS = (("sentiment", "macro_f1"), ("ner", "f1"), ("entity_sentiment", "macro_f1"))


def evaluate_tests(model: AnyModel, tokenizer: PreTrainedTokenizerBase, sets: Sequence[EvalSet], *,
                   max_length: int, batch_size: int, dtype: torch.dtype | None) -> dict[str, dict[str, Any]]:
    """``{name: {spec, examples, engine, precision, max_length, <task>: metrics...}}`` for every test set."""
    out: dict[str, dict[str, Any]] = {}
    for test in sets:
        metrics = evaluate(model, tokenizer, test.examples, max_length=max_length, batch_size=batch_size, dtype=dtype)
        out[test.name] = {"spec": test.spec, "examples": len(test.examples), "engine": "torch",
                          "precision": str(dtype or "fp32").removeprefix("torch."), "max_length": max_length,
                          **metrics}
        log.info("test set %s: %s", test.name, headline(out[test.name]))
    return out


def add_onnx_tests(tests: dict[str, dict[str, Any]], model_dir: Path, onnx_info: dict[str, Any],
                   tokenizer: PreTrainedTokenizerBase, sets: Sequence[EvalSet], *, max_length: int,
                   batch_size: int, threads: int = 1) -> None:
    """Add each set's numbers on ONNX Runtime, in the precision the export serves, as ``tests[name]["onnx"]``.
    A failure is logged and recorded, never raised: the torch numbers and the trained model stay."""
    precision = "int8" if serves_int8(onnx_info) else "fp32"
    try:
        model = OnnxMultitaskModel.load(model_dir, onnx_info, precision, threads)
        for test in sets:
            metrics = evaluate(model, tokenizer, test.examples, max_length=max_length, batch_size=batch_size)
            tests[test.name]["onnx"] = {"precision": precision, **metrics}
    except Exception as error:  # the export itself succeeded; only this measurement is lost
        log.exception("scoring the test sets on ONNX Runtime (%s) failed", precision)
        for test in sets:
            tests[test.name]["onnx"] = {"precision": precision, "error": f"{type(error).__name__}: {error}"[:300]}


def headline(result: dict[str, Any]) -> str:
    """``sentiment macro_f1 0.8370, ner f1 0.8012``: the main number of each task a test set labels."""
    return ", ".join(f"{task} {key} {float(result[task][key]):.4f}" for task, key in TASK_KEYS
                     if key in result.get(task, {})) or "no labelled task"
