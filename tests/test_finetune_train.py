"""Training, saving, serving, evaluating and registering the multi-task model.

Speed: one short MiniLM run on a slice of the bundled corpus; everything else uses the tiny random BERT
(``tiny_model_dir``) as the base encoder, which trains in a fraction of a second per step.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune.args import TrainArgs, parse_args
from finetune.train import TrainResult, train
from monitor.core.errors import ConfigError
from monitor.lifecycle import registry
from schemas.prediction import SENTIMENT_LABELS

SAMPLE = Path(__file__).resolve().parent.parent / "finetune" / "sample_data"
CONFIGS = Path(__file__).resolve().parent.parent / "finetune" / "configs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 48 training and 16 validation headlines of the bundled sample corpus."""
    folder = tmp_path_factory.mktemp("corpus")
    out = []
    for name, n in (("train", 48), ("validation", 16)):
        lines = (SAMPLE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        path = folder / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(path)
    return out[0], out[1]


def run_train(*argv: str) -> TrainResult:
    return train(parse_args(TrainArgs, ["--no-progress", "--database-url", "none", *argv], prog="finpulse train"))


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from monitor.app import main

    monkeypatch.setattr(sys, "argv", ["finpulse", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def minilm_model(corpus: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A few steps of the real default encoder (all-MiniLM-L6-v2) on the corpus slice."""
    train_file, valid_file = corpus
    return run_train("--data", f"finpulse={train_file}", "--validation-data", f"finpulse={valid_file}",
                     "--max-steps", "4", "--batch-size", "8", "--max-length", "24", "--version", "v-minilm",
                     "--models-dir", str(tmp_path_factory.mktemp("models")))


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


def test_train_registers_versions_and_promotion_policy(
    db_url: str, corpus: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "recipe.yaml"
    config.write_text(f"data: [finpulse={corpus[0]}]\nbase_model: {tiny_model_dir}\nmax_steps: 2\nbatch_size: 8\n"
                      f"max_length: 24\nmodels_dir: {tmp_path / 'models'}\nprogress: false\n")
    for version, extra in (("v1", []), ("v2", []), ("v3", ["--promote"])):
        code, stdout, err = run_cli(monkeypatch, capsys, "train", "--config", str(config), "--version", version,
                                    "--database-url", db_url, *extra)
        assert code == 0, err
        assert json.loads(stdout)["version"] == version
    rows = {row.version: row for row in registry.list_versions(db_url)}
    assert {v: r.status for v, r in rows.items()} == {"v1": "retired", "v2": "candidate", "v3": "champion"}
    assert Path(rows["v3"].path) == (tmp_path / "models" / "v3").resolve()
    assert rows["v2"].base_model == str(tiny_model_dir) and rows["v2"].train_args["max_steps"] == 2
    assert "validation" in rows["v2"].metrics and rows["v1"].promoted_at is not None
    assert registry.rollback(db_url).version == "v1"
    assert registry.champion(db_url).version == "v1"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no earlier champion"):
        registry.rollback(db_url)
    assert registry.promote(db_url, "v2").status == "champion"
    assert [r.version for r in registry.list_versions(db_url) if r.status == "champion"] == ["v2"]
    with pytest.raises(ConfigError, match="not registered"):
        registry.promote(db_url, "v9")
    code, _, err = run_cli(monkeypatch, capsys, "train", "--config", str(config), "--version", "v2",
                           "--database-url", db_url)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and "v2 already exists; choose another --version" in last


def test_bad_inputs_are_one_line_cli_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,positive\nodd,sideways\n")
    code, _, err = run_cli(monkeypatch, capsys, "train", "--data", f"csv={bad}", "--database-url", "none")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: {bad}:3: unknown label 'sideways'; expected negative/neutral/positive "
        "(numeric labels need --label-map, e.g. 0=negative,1=positive,2=neutral)")
    code, _, err = run_cli(monkeypatch, capsys, "eval", "--model", str(tmp_path / "none"), "--data", f"csv={bad}")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and "does not exist" in last
    code, out, _ = run_cli(monkeypatch, capsys, "train", "--help")
    assert code == 0 and "--max-train-samples" in out and "--label-map" in out


def test_train_bench_reports_both_precisions(tiny_model_dir: Path) -> None:
    from finetune.bench import train_speed

    result = train_speed(base_model=str(tiny_model_dir), steps=1, rounds=1, batch_size=4, max_length=16)
    assert result["fp32_s_per_step"] > 0 and result["bf16_s_per_step"] > 0 and result["bf16_speedup"] > 0


def test_shipped_benchmark_configs_parse_and_hold_out_the_same_test_sets() -> None:
    minilm = parse_args(TrainArgs, ["--config", str(CONFIGS / "benchmark.yaml")], prog="finpulse train")
    mpnet = parse_args(TrainArgs, ["--config", str(CONFIGS / "benchmark_mpnet.yaml")], prog="finpulse train")
    assert any(spec.startswith("tfns=") for spec in minilm.data) and minilm.exclude_data
    assert (minilm.base_model, mpnet.base_model) == ("all-MiniLM-L6-v2", "all-mpnet-base-v2")
    assert mpnet.exclude_data == minilm.exclude_data and mpnet.validation_split == minilm.validation_split
    assert [spec.split("?")[0] for spec in mpnet.data] == [spec.split("?")[0] for spec in minilm.data]


def test_early_stopping_keeps_the_best_checkpoint(corpus: tuple[Path, Path], tiny_model_dir: Path,
                                                  tmp_path: Path) -> None:
    # A vanishing learning rate: the validation score cannot improve after the first check, so patience 1 stops.
    result = run_train("--data", f"finpulse={corpus[0]}", "--validation-data", f"finpulse={corpus[1]}",
                       "--base-model", str(tiny_model_dir), "--learning-rate", "1e-12", "--eval-steps", "1",
                       "--patience", "1", "--max-steps", "10", "--batch-size", "8", "--max-length", "24",
                       "--models-dir", str(tmp_path))
    assert result.metrics["stopped_early"] and result.metrics["steps"] == 2 and result.metrics["best_step"] == 1
    assert [h["step"] for h in result.metrics["history"]] == [1, 2]


def test_sources_labelling_different_tasks_train_one_model(corpus: tuple[Path, Path], tiny_model_dir: Path,
                                                           tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from finetune.examples import Example, Span
    from finetune.features import collate, encode
    from finetune.model import MultitaskModel, multitask_loss

    tweets = tmp_path / "tweets.csv"
    tweets.write_text("text,label\n$ACME soars on record sales,1\n$BETA slides after guidance cut,0\n"
                      "Markets flat ahead of Fed,2\n")
    ner = tmp_path / "ner.txt"
    ner.write_text("John NNP - I-PER\nSmith NNP - I-PER\njoined VBD - O\nAcme NNP - I-ORG\n\n"
                   "Paris NNP - I-LOC\nrallies VBZ - O\n")
    sentfin = tmp_path / "sentfin.jsonl"
    sentfin.write_text(json.dumps({"s_no": 1, "title": "Infosys up, Wipro down", "entities": [
        {"entity": "Infosys", "sentiment": "positive"}, {"entity": "Wipro", "sentiment": "negative"}]}) + "\n")
    result = run_train("--data", f"tfns={tweets}", "--data", f"conll={ner}", "--data", f"sentfin={sentfin}",
                       "--validation-data", f"finpulse={corpus[1]}", "--base-model", str(tiny_model_dir),
                       "--max-steps", "2", "--batch-size", "8", "--max-length", "24", "--models-dir", str(tmp_path))
    summary = json.loads((result.path / "training_args.json").read_text())["data_summary"]
    assert summary["train_tasks"] == {"sentiment": 3, "ner": 2, "entity": 1}
    assert set(result.metrics["validation"]) == {"sentiment", "ner", "entity_sentiment"}
    # A batch without NER labels has no NER term: masked tasks contribute nothing to the loss.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = MultitaskModel.from_base(str(tiny_model_dir))
    batch = collate(encode([Example("Acme up", "positive", [Span(0, 4, None, "positive")])], tokenizer, 16), 0)
    outputs = model(batch["input_ids"], batch["attention_mask"], batch["span_index"])
    _, parts = multitask_loss(outputs, batch)
    assert set(parts) == {"sentiment", "entity"}
