"""``finpulse train`` and friends through the CLI: registration and promotion, one-line errors, the training
benchmark, the shipped configs, early stopping and multi-source training (tiny random BERT as the encoder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.args import TrainArgs, parse_args
from monitor.core.accounts import Principal
from monitor.core.errors import ConfigError
from monitor.lifecycle import registry
from tests.finetune.train_helpers import CONFIGS, run_cli, run_train

ADMIN = Principal("test-admin", "admin", "cli")


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
    assert registry.rollback(db_url, by=ADMIN).version == "v1"
    assert registry.champion(db_url).version == "v1"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no earlier champion"):
        registry.rollback(db_url, by=ADMIN)
    assert registry.promote(db_url, "v2", by=ADMIN).status == "champion"
    assert [r.version for r in registry.list_versions(db_url) if r.status == "champion"] == ["v2"]
    with pytest.raises(ConfigError, match="not registered"):
        registry.promote(db_url, "v9", by=ADMIN)
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
