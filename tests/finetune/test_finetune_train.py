"""Training, saving, serving, evaluating and registering the multi-task model.

Speed: one short MiniLM run on a slice of the bundled corpus; everything else uses the tiny random BERT
(``tiny_model_dir``) as the base encoder, which trains in a fraction of a second per step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune.train import TrainResult
from schemas.prediction import SENTIMENT_LABELS
from tests.finetune.train_helpers import run_cli, run_train


@pytest.fixture(scope="module")
def minilm_model(corpus: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A few steps of the real default encoder (all-MiniLM-L6-v2) on the corpus slice."""
    train_file, valid_file = corpus
    return run_train("--data", f"finpulse={train_file}", "--validation-data", f"finpulse={valid_file}",
                     "--max-steps", "4", "--batch-size", "8", "--max-length", "24", "--version", "v-minilm",
                     "--models-dir", str(tmp_path_factory.mktemp("models")), onnx=True)


def test_saved_directory_is_complete(minilm_model: TrainResult) -> None:
    path = minilm_model.path
    assert path.name == "v-minilm"
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "finpulse_model.json", "training_args.json",
            "metrics.json", "README.md"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".tmp"))]
    manifest = json.loads((path / "finpulse_model.json").read_text())
    assert manifest["kind"] == "multitask" and manifest["version"] == "v-minilm"
    assert manifest["base_model"] == "all-MiniLM-L6-v2" and manifest["max_length"] == 24
    assert manifest["labels"]["sentiment"] == list(SENTIMENT_LABELS)
    assert manifest["labels"]["ner"] == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    args = json.loads((path / "training_args.json").read_text())
    assert args["seed"] == 42 and args["max_steps"] == 4 and args["resolved_base_model"].endswith("model")
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["best_step"] == 4
    # 16 validation headlines are too few to fit class offsets on: recorded as not applied, weights untouched.
    assert {head: done["applied"] for head, done in metrics["calibration"].items()} == {
        "sentiment": False, "entity_sentiment": False}
    validation = metrics["validation"]
    assert set(validation) == {"sentiment", "ner", "entity_sentiment"}
    assert 0 <= validation["sentiment"]["macro_f1"] <= 1 and 0 <= validation["ner"]["f1"] <= 1
    card = (path / "README.md").read_text()
    assert "all-MiniLM-L6-v2" in card and "macro_f1" in card and "train.jsonl" in card
    # Casing is the default: recorded in the config the loader reads, the training arguments and the card.
    assert json.loads((path / "config.json").read_text())["finpulse_casing"] is True and args["casing"] is True
    assert "Reads casing" in card
    # The ONNX export: files with their checksums in the manifest, and both gate measurements in metrics.json.
    onnx = manifest["onnx"]
    assert {"model.onnx", "entity_head.onnx"} <= names and onnx["fp32"]["file"] == "model.onnx"
    assert all(len(onnx[part]["sha256"]) == 64 for part in ("fp32", "entity_head"))
    gate = metrics["onnx"]["int8_gate"]
    assert gate == onnx["int8_gate"] and gate["max_drop"] == 0.005
    assert "fp32" in metrics["onnx"]["validation"] and gate["recipes"]  # every int8 recipe tried is recorded
    assert [f"int8:{r['recipe']}" for r in gate["recipes"]] == sorted(set(metrics["onnx"]["validation"]) - {"fp32"},
                                                                     key=[f"int8:{r['recipe']}" for r in
                                                                          gate["recipes"]].index)
    assert ("model.int8.onnx" in names) == gate["passed"] == (onnx["int8"] is not None)


def test_scorer_serves_the_multitask_directory(minilm_model: TrainResult) -> None:
    from monitor.scoring.scorer import load_scorer

    scorer = load_scorer(minilm_model.path, precision="fp32", max_length=64)
    assert scorer.version == "v-minilm"
    texts = ["Tata Motors surges while Maruti slumps", "$AAPL and $msft rally as Tim Cook visits Beijing", "x"]
    predictions = scorer.score(texts)
    assert len(predictions) == 3
    for text, prediction in zip(texts, predictions, strict=True):
        assert prediction.sentiment in SENTIMENT_LABELS and math.isclose(sum(prediction.probs), 1, abs_tol=1e-5)
        assert prediction.score == pytest.approx(prediction.probs[2] - prediction.probs[0])
        for entity in prediction.entities:
            assert entity.type in ("ORG", "PER", "LOC", "TICKER") and 0 <= entity.start < entity.end <= len(text)
            assert math.isclose(sum(entity.probs), 1, abs_tol=1e-5) and entity.sentiment in SENTIMENT_LABELS
            if entity.type != "TICKER":
                assert entity.text == text[entity.start:entity.end]
    tickers = [(e.text, e.start, e.end) for e in predictions[1].entities if e.type == "TICKER"]
    assert tickers == [("AAPL", 0, 5), ("MSFT", 10, 15)]


def test_eval_command_on_a_trained_model(minilm_model: TrainResult, corpus: tuple[Path, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    code, stdout, _ = run_cli(monkeypatch, capsys, "eval", "--model", str(minilm_model.path),
                              "--data", f"finpulse={corpus[1]}", "--out", str(out), "--max-length", "24")
    assert code == 0
    report = json.loads(stdout)
    assert report == json.loads(out.read_text())
    assert report["examples"] == 16 and report["version"] == "v-minilm"
    assert report["sentiment"]["n"] == 16 and len(report["sentiment"]["per_class"]) == 3
    assert 0 <= report["sentiment"]["ece"] <= 1 and "confusion_matrix" in report["sentiment"]
    assert {"precision", "recall", "f1", "per_type"} <= set(report["ner"])
    assert report["entity_sentiment"]["n"] > 0


def test_eval_reports_known_metrics(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Heads fixed to constant outputs make every metric computable by hand."""
    from transformers import AutoTokenizer

    from finetune.export import save_version
    from finetune.model import MultitaskModel

    model = MultitaskModel.from_base(str(tiny_model_dir))
    with torch.no_grad():
        for head, bias in ((model.sentiment_head, [0, math.log(4), 0]), (model.entity_head[-1], [0, 0, math.log(4)]),
                           (model.ner_head, [0, 10, 0, 0, 0, 0, 0])):  # always neutral; positive; B-ORG
            head.weight.zero_()
            head.bias.copy_(torch.tensor(bias))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = save_version(model, tokenizer, tmp_path, "v-const", base_model="tiny", max_length=32, train_args={},
                        metrics={}, data_summary={})
    records = [("Acme rises", "neutral", [(0, 4, "ORG", "positive")]),
               ("Beta Corp falls", "negative", [(0, 9, "ORG", "negative")]),
               ("Paris", "neutral", [(0, 5, "LOC", "neutral")]),
               ("Gamma up", "positive", [(0, 5, "ORG", "positive")])]
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"headline": t, "sentiment": s, "entities": [
        {"start": a, "end": b, "type": k, "sentiment": e} for a, b, k, e in ents]}) + "\n" for t, s, ents in records))
    code, stdout, _ = run_cli(monkeypatch, capsys, "eval", "--model", str(path), "--data", f"finpulse={data}",
                              "--precision", "fp32")
    assert code == 0
    report = json.loads(stdout)
    sentiment, ner, entity = report["sentiment"], report["ner"], report["entity_sentiment"]
    # Document: gold neutral, negative, neutral, positive; always "neutral" with confidence 2/3.
    assert sentiment["accuracy"] == pytest.approx(0.5) and sentiment["macro_f1"] == pytest.approx(2 / 9)
    assert sentiment["per_class"]["neutral"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                                                               "support": 2})
    assert sentiment["ece"] == pytest.approx(1 / 6, abs=1e-5)
    assert sentiment["confusion_matrix"]["rows_gold_columns_predicted"] == [[0, 1, 0], [0, 2, 0], [0, 1, 0]]
    # NER: every word becomes its own ORG: 8 predicted, 4 gold, 2 right (Acme, Gamma).
    assert (ner["precision"], ner["recall"], ner["f1"]) == (pytest.approx(0.25), pytest.approx(0.5),
                                                           pytest.approx(1 / 3))
    # Entities: gold positive, negative, neutral, positive; always "positive" with confidence 2/3.
    assert entity["accuracy"] == pytest.approx(0.5) and entity["macro_f1"] == pytest.approx(2 / 9)
    assert entity["ece"] == pytest.approx(1 / 6, abs=1e-5)


def test_entities_of_one_headline_can_get_opposite_sentiments(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Swapped headlines have the same words; only the span's context tells the labels apart."""
    from monitor.scoring.scorer import load_scorer

    def record(up: str, down: str) -> str:
        text = f"{up} surges while {down} slumps"
        entities = [{"start": text.index(name), "end": text.index(name) + len(name), "type": "ORG",
                     "sentiment": sentiment} for name, sentiment in ((up, "positive"), (down, "negative"))]
        return json.dumps({"headline": text, "sentiment": "neutral", "entities": entities}) + "\n"

    data = tmp_path / "pairs.jsonl"
    data.write_text((record("Tata Motors", "Maruti") + record("Maruti", "Tata Motors")) * 4)
    result = run_train("--data", f"finpulse={data}", "--base-model", str(tiny_model_dir), "--validation-split", "0",
                       "--max-steps", "60", "--batch-size", "8", "--learning-rate", "3e-3", "--warmup-ratio", "0",
                       "--max-length", "16", "--models-dir", str(tmp_path / "models"), "--precision", "fp32")
    prediction = load_scorer(result.path, precision="fp32").score(["Tata Motors surges while Maruti slumps"])[0]
    signals = {e.text: e.sentiment for e in prediction.entities}
    assert signals == {"Tata Motors": "positive", "Maruti": "negative"}


def test_training_continues_from_a_finpulse_model(corpus: tuple[Path, Path], tiny_model_dir: Path,
                                                  tmp_path: Path) -> None:
    parent = run_train("--data", f"finpulse={corpus[0]}", "--base-model", str(tiny_model_dir), "--max-steps", "2",
                       "--batch-size", "8", "--max-length", "24", "--version", "parent", "--models-dir", str(tmp_path))
    child = run_train("--data", f"finpulse={corpus[0]}", "--init-model", str(parent.path), "--max-steps", "1",
                      "--learning-rate", "1e-12", "--batch-size", "8", "--max-length", "24", "--version", "child",
                      "--parent-version", "parent", "--models-dir", str(tmp_path))
    before, after = load_file(parent.path / "model.safetensors"), load_file(child.path / "model.safetensors")
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # heads included: a warm start


def test_training_is_seeded(corpus: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    def weights(seed: str, version: str) -> dict[str, torch.Tensor]:
        result = run_train("--data", f"finpulse={corpus[0]}", "--base-model", str(tiny_model_dir), "--seed", seed,
                           "--max-steps", "3", "--batch-size", "8", "--max-length", "24", "--version", version,
                           "--models-dir", str(tmp_path))
        return load_file(result.path / "model.safetensors")

    first, again, other = weights("7", "a"), weights("7", "b"), weights("8", "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
