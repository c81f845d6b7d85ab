"""Class-prior calibration: offsets that raise macro-F1 are found, kept only if they help, folded into the heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from finetune.calibrate import MIN_EXAMPLES, calibrate, fit_offsets, macro_f1
from finetune.evaluate import Collected
from finetune.metrics import classification
from finetune.model import MultitaskModel
from schemas.prediction import SENTIMENT_LABELS

NEG, NEU, POS = (SENTIMENT_LABELS.index(name) for name in ("negative", "neutral", "positive"))


def _skewed(n: int, neutral_push: float, seed: int = 0) -> tuple[list[list[float]], list[str]]:
    """Probabilities of a head that separates the classes but leans ``neutral_push`` (logits) towards neutral."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(3, size=n, p=[0.2, 0.6, 0.2])
    logits = 2.0 * np.eye(3)[gold] + rng.normal(0, 1.0, size=(n, 3))
    logits[:, NEU] += neutral_push
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs.tolist(), [SENTIMENT_LABELS[g] for g in gold]


def test_macro_f1_agrees_with_the_classification_report() -> None:
    probs, gold = _skewed(300, 1.0)
    predicted = np.asarray(probs).argmax(1)
    labels = np.array([SENTIMENT_LABELS.index(g) for g in gold])
    expected = classification(gold, [SENTIMENT_LABELS[p] for p in predicted])["macro_f1"]
    assert macro_f1(labels, predicted) == pytest.approx(expected)


def test_offsets_undo_a_lean_towards_the_majority_class() -> None:
    probs, gold = _skewed(1500, neutral_push=1.5)
    offsets = fit_offsets(probs, gold)
    assert offsets.applied and offsets.n == 1500
    assert offsets.bias[NEU] == 0.0 and offsets.bias[NEG] > 0.5 and offsets.bias[POS] > 0.5
    assert offsets.macro_f1_after > offsets.macro_f1_before + 0.03
    # Held-out data of the same kind gains too: the offsets generalise rather than memorise.
    test_probs, test_gold = _skewed(1500, neutral_push=1.5, seed=1)
    labels = np.array([SENTIMENT_LABELS.index(g) for g in test_gold])
    logp = np.log(np.asarray(test_probs))
    assert macro_f1(labels, (logp + offsets.bias).argmax(1)) > macro_f1(labels, logp.argmax(1)) + 0.02


def test_no_offsets_when_nothing_is_gained_or_too_few_items() -> None:
    probs, gold = _skewed(1500, neutral_push=0.0)
    unbiased = fit_offsets(probs, gold)
    assert unbiased.macro_f1_after - unbiased.macro_f1_before < 0.01  # nothing much to gain on unbiased data
    few = fit_offsets(*_skewed(MIN_EXAMPLES - 1, neutral_push=1.5))
    assert not few.applied and few.bias == [0.0, 0.0, 0.0]
    # No positive item in validation: positive's F1 is 0 whatever the offsets, so a search would learn to
    # suppress it. Nothing is fitted instead.
    probs, gold = _skewed(1500, neutral_push=1.5)
    kept = [(p, g) for p, g in zip(probs, gold, strict=True) if g != "positive"]
    one_sided = fit_offsets([p for p, _ in kept], [g for _, g in kept])
    assert len(kept) > MIN_EXAMPLES and not one_sided.applied and one_sided.bias == [0.0, 0.0, 0.0]


def test_offsets_are_folded_into_both_heads(tiny_model_dir: Path) -> None:
    model = MultitaskModel.from_base(str(tiny_model_dir)).eval()
    seen = Collected()
    seen.doc_probs, doc_gold = _skewed(600, neutral_push=1.5)
    seen.doc = [(g, "neutral", 0.5) for g in doc_gold]
    seen.entity_probs, entity_gold = _skewed(600, neutral_push=-1.0, seed=2)  # this head leans away from neutral
    seen.entity = [(g, "neutral", 0.5) for g in entity_gold]
    ids = torch.tensor([[101, 2000, 2001, 102]])
    mask = torch.ones_like(ids)
    spans = torch.tensor([[0, 1, 3]])
    with torch.no_grad():
        before = model(ids, mask, spans)
    done = calibrate(model, seen)
    with torch.no_grad():
        after = model(ids, mask, spans)
    assert done["sentiment"]["applied"] and done["entity_sentiment"]["applied"]
    for head, logits_before, logits_after in (("sentiment", before.sentiment, after.sentiment),
                                              ("entity_sentiment", before.entity, after.entity)):
        shift = (logits_after - logits_before)[0].tolist()
        assert shift == pytest.approx(done[head]["bias"], abs=1e-5)
    assert done["entity_sentiment"]["bias"][NEG] < 0 and done["entity_sentiment"]["bias"][POS] < 0


def test_recalibrated_metrics_match_a_second_pass_with_the_calibrated_heads(tiny_model_dir: Path) -> None:
    """Training reports post-calibration validation metrics from the first pass's probabilities; they must equal
    what running the calibrated model again gives."""
    from transformers import AutoTokenizer

    from finetune.calibrate import recalibrated
    from finetune.data.sources import ColumnDefaults, DataSpec, load_sources
    from finetune.evaluate import collect, evaluate, report

    sample = Path(__file__).resolve().parents[2] / "finetune" / "sample_data" / "validation.jsonl"
    examples = load_sources([DataSpec.parse(f"finpulse={sample}")], ColumnDefaults("text", "label", None))
    torch.manual_seed(3)
    model = MultitaskModel.from_base(str(tiny_model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    seen = collect(model, tokenizer, examples, max_length=64)
    done = calibrate(model, seen)
    assert done["sentiment"]["applied"] or done["entity_sentiment"]["applied"]
    derived, measured = report(recalibrated(seen, done)), evaluate(model, tokenizer, examples, max_length=64)
    for task in ("sentiment", "entity_sentiment"):
        assert derived[task]["confusion_matrix"] == measured[task]["confusion_matrix"]
        assert derived[task]["macro_f1"] == pytest.approx(measured[task]["macro_f1"])
        assert derived[task]["ece"] == pytest.approx(measured[task]["ece"], abs=1e-5)
    assert derived["ner"] == measured["ner"]
