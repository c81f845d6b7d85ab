"""What a model says about one text. Shared by the scorer (monitor) and the trainer's predictor (finetune)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SENTIMENT_LABELS: tuple[str, str, str] = ("negative", "neutral", "positive")


@dataclass(frozen=True, slots=True)
class EntityPrediction:
    text: str
    type: str  # ORG | PER | LOC | TICKER
    start: int  # character offsets in the scored text
    end: int
    sentiment: str
    probs: tuple[float, float, float]  # negative, neutral, positive
    score: float  # P(positive) - P(negative)
    confidence: float

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["probs"] = list(self.probs)
        return out


@dataclass(frozen=True, slots=True)
class Prediction:
    sentiment: str
    probs: tuple[float, float, float]  # negative, neutral, positive
    score: float  # P(positive) - P(negative), in [-1, 1]
    confidence: float  # probability of the predicted label
    entities: list[EntityPrediction] = field(default_factory=list)

    @classmethod
    def from_probs(
        cls, probs: tuple[float, float, float], entities: list[EntityPrediction] | None = None
    ) -> Prediction:
        best = max(range(3), key=lambda i: probs[i])
        return cls(
            sentiment=SENTIMENT_LABELS[best],
            probs=probs,
            score=probs[2] - probs[0],
            confidence=probs[best],
            entities=entities or [],
        )
