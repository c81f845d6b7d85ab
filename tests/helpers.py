"""Helpers the tests share (not fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from finetune.base_model import default_base_model_dir


def make_tiny_classifier(path: Path, seed: int = 0, version: str = "tiny-0") -> Path:
    """Save a tiny random BERT sequence classifier (safetensors) with the MiniLM tokenizer to ``path``."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=512, num_labels=3,
        id2label={0: "negative", 1: "neutral", 2: "positive"},
        label2id={"negative": 0, "neutral": 1, "positive": 2},
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(default_base_model_dir()).save_pretrained(path)
    (path / "finpulse_model.json").write_text(json.dumps({"kind": "sequence-classification", "version": version}))
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(excinfo: pytest.ExceptionInfo[BaseException], *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message
