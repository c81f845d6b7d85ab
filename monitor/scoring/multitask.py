"""Serves a trained multi-task directory through :mod:`monitor.scoring.scorer` (``load_backend``).

One encoder pass per sub-batch yields the document sentiment, the BIO tags (constrained Viterbi decoding,
:mod:`finetune.bio_decode`, then character spans through the tokenizer's offsets) and, from the same hidden states,
the sentiment of each entity span. Cashtags (``$AAPL``) are found by the cashtag rule
(:mod:`monitor.scoring.cashtags`) and become TICKER entities scored by the entity head over their tokens; a
predicted ORG/PER/LOC span overlapping a cashtag gives way to the TICKER.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import BatchEncoding

from finetune.bio_decode import constrained_tags, real_tokens
from finetune.casing import encoder_inputs
from finetune.evaluate import AnyModel
from finetune.features import decode_bio, token_range
from finetune.markup import drop_markup_entities
from finetune.model import MultitaskModel
from finetune.model_dir import check_multitask_dir
from finetune.onnx_export import ensure_fp32_export
from finetune.onnx_model import OnnxMultitaskModel, serves_int8
from monitor.scoring.cashtags import find_cashtags
from schemas.prediction import EntityPrediction, Prediction

log = logging.getLogger(__name__)

SPAN_BUCKET = 16


def _probs(row: Sequence[float]) -> tuple[float, float, float]:
    return (float(row[0]), float(row[1]), float(row[2]))


class MultitaskBackend:
    """monitor.scoring.scorer's Backend for finpulse's own model, on torch or on ONNX Runtime (same interface)."""

    def __init__(self, model: AnyModel) -> None:
        self.model = model
        self.device = next(model.parameters()).device

    def predict(self, texts: Sequence[str], encoding: BatchEncoding) -> list[Prediction]:
        offsets = encoding["offset_mapping"].tolist()
        real = real_tokens(encoding["offset_mapping"])
        outputs = self.model(**encoder_inputs(self.model, texts, encoding, self.device))
        doc_probs = torch.softmax(outputs.sentiment.float(), dim=-1).cpu().tolist()
        ner_ids = constrained_tags(outputs.ner, real)
        # Entities of every text first, then one call of the entity head for all of them.
        found: list[list[tuple[int, int, str, str]]] = []  # start, end, type, surface text
        rows = []
        for row, text in enumerate(texts):
            tickers = find_cashtags(text)
            spans = [(s, e, "TICKER", symbol) for s, e, symbol in tickers]
            for start, end, kind in drop_markup_entities(text, decode_bio(ner_ids[row], offsets[row], text)):
                if not any(s < end and start < e for s, e, _ in tickers):
                    spans.append((start, end, kind, text[start:end]))
            spans.sort()
            kept = []
            for start, end, kind, surface in spans:
                tokens = token_range(offsets[row], start, end)
                if tokens is not None:  # a span cut off by max_length cannot be scored
                    kept.append((start, end, kind, surface))
                    rows.append([row, tokens[0], tokens[1]])
            found.append(kept)
        # Span counts padded to a multiple of SPAN_BUCKET with copies of the first span (outputs discarded): every
        # distinct count is a new matmul shape, and oneDNN caches kernels per shape, so unpadded counts made a
        # long-running consumer's memory creep up (measured with `finpulse bench --soak`).
        count = len(rows)
        rows += rows[:1] * (-count % SPAN_BUCKET)
        span_index = torch.tensor(rows, dtype=torch.long, device=self.device).reshape(-1, 3)
        entity_logits = self.model.span_logits(outputs.hidden, outputs.pooled, span_index)[:count]
        entity_probs = torch.softmax(entity_logits.float(), dim=-1).cpu().tolist()
        out, cursor = [], 0
        for row, spans_of_text in enumerate(found):
            entities = []
            for start, end, kind, surface in spans_of_text:
                scored = Prediction.from_probs(_probs(entity_probs[cursor]))
                cursor += 1
                entities.append(EntityPrediction(surface, kind, start, end, scored.sentiment, scored.probs,
                                                 scored.score, scored.confidence))
            out.append(Prediction.from_probs(_probs(doc_probs[row]), entities))
        return out


def load_backend(model_dir: Path, device: torch.device) -> MultitaskBackend:
    """Entry point used by :func:`monitor.scoring.scorer.load_scorer` for ``{"kind": "multitask"}`` directories."""
    check_multitask_dir(model_dir)
    return MultitaskBackend(MultitaskModel.load(Path(model_dir), device))


def load_onnx_multitask(model_dir: Path, precision: str, threads: int) -> tuple[MultitaskBackend, str]:
    """The ONNX export on ONNX Runtime (exported first if missing): int8 where its gate passed and ``precision``
    allows, else fp32. Returns the backend and the precision it serves."""
    info = ensure_fp32_export(Path(model_dir))
    served = "int8" if precision in ("auto", "int8") and serves_int8(info) else "fp32"
    if precision in ("auto", "int8") and served == "fp32":
        log.log(logging.WARNING if precision == "int8" else logging.INFO, "%s: serving ONNX fp32, not int8: %s",
                Path(model_dir).name, (info.get("int8_gate") or {}).get("reason", "no gated int8 export"))
    return MultitaskBackend(OnnxMultitaskModel.load(Path(model_dir), info, served, threads)), served
