"""The on-disk contract of a model directory: ``model.safetensors`` (never pickle) plus the manifest
``finpulse_model.json`` (``kind``, ``format_version``, ``version``), written by :mod:`finetune.export` and read by
every loader (serving, evaluation, continued training).

A version trained with ``--peft lora`` (:mod:`finetune.peft_lora`) serves the same way: its adapters are merged
into ``model.safetensors``. It also carries the adapter in peft's format under ``adapter/`` and a ``peft`` record
in the manifest (``method``, ``rank``, ``alpha``, ``targets``, ``adapter_file``, ``adapter_bytes``, ``base_model``,
``parent_version``); no loader needs either.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from monitor.core.errors import ModelLoadError

MANIFEST = "finpulse_model.json"
FORMAT_VERSION = 1
ADAPTER_DIR = "adapter"  # a subfolder: transformers would take a folder holding adapter_config.json for an adapter
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # peft's file names, so PeftModel.from_pretrained reads the folder
ADAPTER_CONFIG = "adapter_config.json"


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{path}: not valid JSON ({error}); re-export the model") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object; re-export the model")
    return data


def check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist; train one with `finpulse train` "
                             "or set FINPULSE_MODEL_DIR")
    if not (model_dir / "model.safetensors").exists():
        found = sorted(p.name for p in model_dir.iterdir())[:8]
        raise ModelLoadError(f"{model_dir}: expected model.safetensors (pickled weights are refused), found {found}")


def check_multitask_dir(model_dir: Path) -> dict[str, Any]:
    """The manifest of a multi-task directory, or ModelLoadError saying what is wrong."""
    model_dir = Path(model_dir)
    check_model_dir(model_dir)
    manifest = read_manifest(model_dir)
    if manifest.get("kind") != "multitask":
        raise ModelLoadError(f"{model_dir}: finpulse_model.json kind is {manifest.get('kind')!r}, expected "
                             "'multitask'; train one with `finpulse train`")
    if int(manifest.get("format_version", 1)) > FORMAT_VERSION:
        raise ModelLoadError(f"{model_dir}: model format {manifest['format_version']} is newer than this finpulse "
                             f"reads ({FORMAT_VERSION}); upgrade finpulse")
    return manifest


def write_manifest(model_dir: Path, data: dict[str, Any]) -> None:
    """Replace the manifest atomically (a reader sees the old or the new one, never half of one)."""
    path = Path(model_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
