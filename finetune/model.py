"""The multi-task model: one transformer encoder, three heads, one forward pass.

* document sentiment from the attention-masked mean of the last hidden states (MiniLM was trained for mean pooling);
* BIO token classification for ORG/PER/LOC;
* entity sentiment from each span's mean-pooled token states concatenated with the document vector, through a
  small MLP. The span vectors are contextual, so two entities of one headline can get opposite labels.

Weights are stored with safetensors only; the encoder's ``config.json`` sits next to them so that
:meth:`MultitaskModel.load` can rebuild the architecture without the base model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from finetune.base_model import resolve_base_model
from finetune.casing import CASING_CLASSES
from finetune.examples import BIO_LABELS, IGNORE
from monitor.core.errors import ModelLoadError

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
CASING_KEY = "finpulse_casing"  # in the saved config.json: whether the model reads casing classes


@dataclass
class Outputs:
    sentiment: torch.Tensor  # [batch, 3] logits
    ner: torch.Tensor  # [batch, tokens, len(BIO_LABELS)] logits
    entity: torch.Tensor  # [spans, 3] logits
    hidden: torch.Tensor  # [batch, tokens, hidden]
    pooled: torch.Tensor  # [batch, hidden]


class MultitaskModel(nn.Module):
    def __init__(self, encoder: PreTrainedModel, dropout: float = 0.1, casing: bool = False) -> None:
        super().__init__()
        hidden = int(encoder.config.hidden_size)
        self.encoder = encoder
        # Added to the word embeddings (finetune.casing); zero at first, so training starts from the encoder as is.
        self.casing: nn.Embedding | None = nn.Embedding(CASING_CLASSES, hidden) if casing else None
        if self.casing is not None:
            nn.init.zeros_(self.casing.weight)
        self.dropout = nn.Dropout(dropout)
        self.sentiment_head = nn.Linear(hidden, 3)
        self.ner_head = nn.Linear(hidden, len(BIO_LABELS))
        self.entity_head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 3)
        )

    @property
    def reads_casing(self) -> bool:
        return self.casing is not None

    @classmethod
    def from_base(cls, name_or_path: str, casing: bool = False) -> MultitaskModel:
        """A fresh model on a pretrained encoder (local dir or Hugging Face id; safetensors only)."""
        source = resolve_base_model(name_or_path)
        try:
            encoder = AutoModel.from_pretrained(  # nosec B615 # the packaged offline copy, or a Hub id an operator chose
                source, use_safetensors=True, trust_remote_code=False)
        except (OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(f"base model {name_or_path!r}: could not load safetensors weights ({first}); "
                                 "pass a local directory or a Hugging Face id that has model.safetensors") from None
        return cls(encoder, casing=casing)

    @classmethod
    def load(cls, model_dir: Path, device: torch.device | str = "cpu") -> MultitaskModel:
        """Rebuild from ``config.json`` and load ``model.safetensors`` strictly (no pickle is ever read)."""
        config = AutoConfig.from_pretrained(  # nosec B615 # a local model folder; never the Hub
            model_dir, trust_remote_code=False, local_files_only=True)
        encoder = AutoModel.from_config(config)  # type: ignore[no-untyped-call]
        model = cls(encoder, casing=bool(getattr(config, CASING_KEY, False)))
        missing, unexpected = load_model(model, str(Path(model_dir) / WEIGHTS), strict=False, device=str(device))
        if missing or unexpected:
            raise ModelLoadError(f"{model_dir}: {WEIGHTS} does not match the multitask architecture "
                                 f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); re-train it")
        return model.to(device).eval()

    def save(self, model_dir: Path) -> None:
        save_model(self, str(model_dir / WEIGHTS))
        (model_dir / WEIGHTS).chmod(0o644)  # safetensors creates it owner-only; servers may run as another user
        setattr(self.encoder.config, CASING_KEY, self.reads_casing)
        self.encoder.config.save_pretrained(model_dir)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, span_index: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, casing_ids: torch.Tensor | None = None) -> Outputs:
        """``span_index`` rows are (batch row, first token, end token exclusive); ``casing_ids`` (from
        :func:`finetune.casing.casing_batch`) are required when the model reads casing and ignored otherwise."""
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        if self.casing is None:
            kwargs["input_ids"] = input_ids
        elif casing_ids is None:
            raise ValueError("this model reads casing: pass casing_ids (finetune.casing.encoder_inputs makes them)")
        else:
            kwargs["inputs_embeds"] = self.encoder.get_input_embeddings()(input_ids) + self.casing(casing_ids)
        hidden = self.encoder(attention_mask=attention_mask, **kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if span_index is None:
            span_index = torch.zeros((0, 3), dtype=torch.long, device=hidden.device)
        return Outputs(
            sentiment=self.sentiment_head(self.dropout(pooled)),
            ner=self.ner_head(self.dropout(hidden)),
            entity=self.span_logits(hidden, pooled, span_index),
            hidden=hidden,
            pooled=pooled,
        )

    def span_logits(self, hidden: torch.Tensor, pooled: torch.Tensor, span_index: torch.Tensor) -> torch.Tensor:
        rows, starts, ends = span_index[:, 0], span_index[:, 1], span_index[:, 2]
        positions = torch.arange(hidden.shape[1], device=hidden.device)
        weights = ((positions >= starts[:, None]) & (positions < ends[:, None])).to(hidden.dtype)  # [spans, tokens]
        span_vectors = (hidden[rows] * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp(min=1.0)
        features = torch.cat([span_vectors, pooled[rows]], dim=-1)
        return self.entity_head(self.dropout(features))  # type: ignore[no-any-return]


def multitask_loss(outputs: Outputs, batch: dict[str, torch.Tensor],
                   weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the three cross-entropies; each task averages over its own labelled items, and a task with
    no labels in the batch contributes nothing (masking is what lets mixed sources train one model)."""
    parts: dict[str, torch.Tensor] = {}
    sentiment = batch["sentiment_labels"]
    if bool((sentiment != IGNORE).any()):
        parts["sentiment"] = nn.functional.cross_entropy(outputs.sentiment.float(), sentiment, ignore_index=IGNORE)
    ner = batch["ner_labels"]
    if bool((ner != IGNORE).any()):
        parts["ner"] = nn.functional.cross_entropy(outputs.ner.float().flatten(0, 1), ner.flatten(),
                                                   ignore_index=IGNORE)
    if batch["span_labels"].numel():
        parts["entity"] = nn.functional.cross_entropy(outputs.entity.float(), batch["span_labels"])
    scale = dict(zip(("sentiment", "ner", "entity"), weights, strict=True))
    total = sum((scale[name] * value for name, value in parts.items()), torch.zeros((), device=sentiment.device))
    return total, {name: float(value.detach()) for name, value in parts.items()}
