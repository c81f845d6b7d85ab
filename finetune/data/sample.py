"""The bundled sample corpus (``finetune/sample_data/``, written by the finpulse authors): tests, the demo model,
and the fallback reference and replay sample of retraining."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLE_TRAIN = SAMPLE_DIR / "train.jsonl"
SAMPLE_VALIDATION = SAMPLE_DIR / "validation.jsonl"
