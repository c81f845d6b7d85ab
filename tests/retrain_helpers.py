"""Helpers of the retraining tests: a tiny multi-task champion, learnable labels, settings and a fast recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from transformers import AutoTokenizer

from finetune.data.splits import normalize_text, stable_fraction
from finetune.export import save_version
from finetune.model import MultitaskModel
from monitor.core.db import session_scope
from monitor.core.settings import Settings, load_settings
from monitor.lifecycle import registry
from monitor.lifecycle.retrain_data import SPLIT_SEED
from schemas.registry import LabelledNews

# Headlines whose sentiment a tiny model learns in a few dozen steps.
PHRASES = {"positive": "shares surge after record results", "negative": "shares plunge after fraud probe",
           "neutral": "shares hold steady ahead of meeting"}
LABELS = ("positive", "negative", "neutral")
WRONG = {"positive": "negative", "negative": "neutral", "neutral": "positive"}  # every label changed
GOLD_FRACTION = 0.3
RECIPE = ("max_steps: 40\nbatch_size: 16\nlearning_rate: 0.003\nwarmup_ratio: 0\nmax_length: 24\n"
          "validation_split: 0\nprecision: fp32\nseed: 1\nonnx: false\n")


def make_champion(url: str, models_dir: Path, base: Path, version: str = "v0") -> Path:
    """A multi-task model with random heads on the tiny encoder, registered as the (first) champion."""
    model = MultitaskModel.from_base(str(base))
    path = save_version(model, AutoTokenizer.from_pretrained(base), models_dir, version, base_model=str(base),
                        max_length=32, train_args={}, metrics={}, data_summary={})
    registry.register(url, version=version, path=str(path), base_model=str(base), metrics={}, train_args={})
    return path


def is_gold(text: str) -> bool:
    """Where :func:`monitor.lifecycle.retrain_data.assign_splits` will put ``text``."""
    return stable_fraction(normalize_text(text), SPLIT_SEED) < GOLD_FRACTION


def add_labels(engine: Engine, start: int, count: int, *, wrong_training_labels: bool = False, by: str = "test",
               role: str | None = None) -> list[int]:
    """``count`` labelled headlines by ``by`` (an account of ``role``; None: from before accounts existed); with
    ``wrong_training_labels`` the ones bound for training get a wrong label (their split is preset, as an earlier
    assignment would have) while the gold ones stay right."""
    rows = []
    for i in range(start, start + count):
        label = LABELS[i % 3]
        text = f"Firm {i} {PHRASES[label]}"
        row = LabelledNews(text=text, sentiment=label, labelled_by=by, labeller_role=role)
        if wrong_training_labels:
            row.split = "gold" if is_gold(text) else "train"
            if row.split == "train":
                row.sentiment = WRONG[label]
        rows.append(row)
    with session_scope(engine) as session:
        session.add_all(rows)
        session.flush()
        return [int(row.id or 0) for row in rows]


def retrain_settings(url: str, root: Path, **overrides: Any) -> Settings:
    recipe = root / "recipe.yaml"
    if not recipe.exists():
        recipe.write_text(RECIPE)
    values: dict[str, Any] = {
        "database_url": url, "models_dir": root / "models", "device": "cpu", "precision": "fp32",
        "max_seq_length": 32, "retrain_min_labels": 20, "retrain_replay_samples": 8,
        "retrain_gold_fraction": GOLD_FRACTION, "retrain_config": recipe, "retrain_tolerance": 0.01,
        "retrain_min_improvement": 0.0, "notify_urls": [],
    }
    values.update(overrides)
    return load_settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """FINPULSE_* variables that reproduce ``settings`` in a subprocess."""
    names = ("database_url", "models_dir", "device", "precision", "max_seq_length", "retrain_min_labels",
             "retrain_replay_samples", "retrain_gold_fraction", "retrain_config", "retrain_tolerance",
             "retrain_min_improvement", "drift_cron", "retrain_cron", "retrain_promotion")
    return {f"FINPULSE_{name.upper()}": str(getattr(settings, name)) for name in names}
