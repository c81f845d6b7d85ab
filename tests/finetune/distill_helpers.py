"""Distillation test fixtures' makers: a student encoder with a tokenizer unlike the teacher's, built here from the
sample corpus (a byte-level BPE, GPT-2/RoBERTa style, cased; the teacher keeps MiniLM's uncased word pieces), and an
unlabelled text file. Nothing is downloaded."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from tests.finetune.train_helpers import SAMPLE


def headlines(name: str = "train", limit: int | None = None) -> list[str]:
    lines = (SAMPLE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:limit]
    return [json.loads(line)["headline"] for line in lines]


def bpe_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(headlines(), trainer)
    eos, bos = tokenizer.token_to_id("</s>"), tokenizer.token_to_id("<s>")
    assert eos is not None and bos is not None
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", eos), ("<s>", bos), trim_offsets=True)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        cls_token="<s>", sep_token="</s>", model_max_length=512)


def make_bpe_student(path: Path, seed: int = 0) -> Path:
    """A tiny random BERT encoder (safetensors) with the BPE tokenizer: a base model for ``--base-model``."""
    tokenizer = bpe_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def write_texts(path: Path, texts: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([i, text] for i, text in enumerate(texts))
    return path
