"""``finpulse train-bench``: training speed of the multi-task model in fp32 and bf16 autocast, side by side.

Rounds alternate fp32 and bf16 so that load from other processes on a shared machine hits both about equally; the
median step time per precision is reported. Speed only: no quality is measured here.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import torch
from transformers import AutoTokenizer

from finetune.base_model import resolve_base_model
from finetune.data.entities import read_finpulse
from finetune.data.sample import SAMPLE_TRAIN
from finetune.device import cpu_supports_bf16, resolve_device
from finetune.examples import Example, Span
from finetune.features import collate, encode
from finetune.model import MultitaskModel, multitask_loss

log = logging.getLogger(__name__)

_SYNTHETIC = ["Tata Motors surges while Maruti slumps", "$AAPL beats estimates as iPhone sales jump in China",
              "Fed holds rates steady; Powell warns on inflation", "Infosys shares fall after weak guidance",
              "Reliance to raise Rs 5,000 crore via bonds", "Goldman Sachs cuts Tesla target on margin worries"]


def _examples(n: int) -> list[Example]:
    if SAMPLE_TRAIN.exists():
        examples = read_finpulse(SAMPLE_TRAIN)
    else:
        examples = [Example(t, "neutral", [Span(0, t.index(" "), "ORG", "positive")], ner=True) for t in _SYNTHETIC]
    return [examples[i % len(examples)] for i in range(n)]


def train_speed(*, base_model: str = "all-MiniLM-L6-v2", steps: int = 10, rounds: int = 3, batch_size: int = 32,
                max_length: int = 64, device: str = "auto", seed: int = 0, threads: int = 0) -> dict[str, Any]:
    """Median seconds per optimizer step in fp32 and bf16 and their ratio (``threads`` 0 = torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # the packaged offline copy, or a Hub id an operator chose
        resolve_base_model(base_model), trust_remote_code=False)
    torch.manual_seed(seed)
    model = MultitaskModel.from_base(base_model, casing=True).to(torch_device).train()  # as `finpulse train` does
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    features = encode(_examples(batch_size), tokenizer, max_length)
    batch = {k: v.to(torch_device) for k, v in collate(features, int(tokenizer.pad_token_id or 0)).items()}
    timings: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def run(precision: str, count: int) -> list[float]:
        out = []
        for _ in range(count):
            started = time.perf_counter()
            with torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                outputs = model(batch["input_ids"], batch["attention_mask"], batch["span_index"],
                                casing_ids=batch["casing_ids"])
            loss, _ = multitask_loss(outputs, batch)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if torch_device.type == "cuda":
                torch.cuda.synchronize()
            out.append(time.perf_counter() - started)
        return out

    for precision in timings:
        run(precision, 2)  # warm-up: kernel selection, allocator
    for _ in range(rounds):
        for precision in timings:
            timings[precision].extend(run(precision, steps))
    fp32, bf16 = statistics.median(timings["fp32"]), statistics.median(timings["bf16"])
    return {
        "device": str(torch_device), "threads": torch.get_num_threads(), "cpu_native_bf16": cpu_supports_bf16(),
        "base_model": base_model, "batch_size": batch_size, "tokens_per_text": int(batch["input_ids"].shape[1]),
        "steps_per_precision": steps * rounds,
        "fp32_s_per_step": round(fp32, 4), "bf16_s_per_step": round(bf16, 4),
        "fp32_texts_per_s": round(batch_size / fp32, 1), "bf16_texts_per_s": round(batch_size / bf16, 1),
        "bf16_speedup": round(fp32 / bf16, 3),
    }
