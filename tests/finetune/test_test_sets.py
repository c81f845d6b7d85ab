"""Named test sets (``--test-data NAME=KIND=PATH``): kept out of training, scored with the saved model after
training, recorded in metrics.json (``tests``), the model card and the CLI summary. The bundled sample corpus's
validation file is the test set; the tiny random BERT is the encoder, so a run takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.args import TrainArgs, parse_args
from finetune.data.splits import normalize_text
from finetune.evaluate import evaluate_dir
from finetune.train import load_data
from monitor.core.errors import ConfigError
from monitor.core.settings import get_settings
from tests.finetune.train_helpers import SAMPLE, run_cli
from tests.helpers import one_line_error

VALIDATION = SAMPLE / "validation.jsonl"


def test_test_sets_are_excluded_scored_with_the_saved_model_and_recorded(
        corpus: tuple[Path, Path], tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    # The test file is also passed as training data: its texts must still never be trained on.
    code, out, err = run_cli(monkeypatch, capsys, "train", "--data", f"finpulse={corpus[0]}",
                             "--data", f"finpulse={VALIDATION}", "--validation-split", "0",
                             "--test-data", f"sample_valid=finpulse={VALIDATION}",
                             "--base-model", str(tiny_model_dir), "--max-steps", "3", "--batch-size", "8",
                             "--max-length", "32", "--precision", "fp32", "--device", "cpu", "--version", "v-tests",
                             "--models-dir", str(models), "--database-url", "none", "--no-progress")
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary["tests"]) == {"sample_valid"} and "sentiment macro_f1" in summary["tests"]["sample_valid"]
    path = models / "v-tests"
    metrics = json.loads((path / "metrics.json").read_text())
    args = json.loads((path / "training_args.json").read_text())
    test_lines = VALIDATION.read_text(encoding="utf-8").splitlines()
    assert args["test_data"] == [f"sample_valid=finpulse={VALIDATION}"]
    assert args["data_summary"]["test_sets"] == {"sample_valid": len(test_lines)}
    assert args["data_summary"]["train"] == 48  # only the corpus headlines are left to train on

    result = metrics["tests"]["sample_valid"]
    serving_length = get_settings().max_seq_length
    assert result["spec"] == f"finpulse={VALIDATION}" and result["examples"] == len(test_lines)
    assert (result["engine"], result["precision"], result["max_length"]) == ("torch", "fp32", serving_length)
    assert set(result["sentiment"]["recall"]) == {"negative", "neutral", "positive"}
    assert 0 <= result["sentiment"]["macro_f1"] <= 1 and 0 <= result["ner"]["f1"] <= 1
    assert 0 <= result["entity_sentiment"]["macro_f1"] <= 1
    # The numbers are the saved version's, as `finpulse eval` measures it at the serving length.
    examples = load_data(parse_args(TrainArgs, ["--data", f"finpulse={VALIDATION}", "--validation-split", "0"],
                                    prog="t"))[0]
    served = evaluate_dir(path, examples, device="cpu", precision="fp32", max_length=serving_length)
    for task, key in (("sentiment", "macro_f1"), ("ner", "f1"), ("entity_sentiment", "macro_f1")):
        assert result[task][key] == pytest.approx(served[task][key], abs=1e-9)
    assert result["sentiment"]["recall"] == pytest.approx(served["sentiment"]["recall"], abs=1e-9)

    card = (path / "README.md").read_text()
    assert "## Test sets (held out from training)" in card and f"`finpulse={VALIDATION}`" in card
    row = next(line for line in card.splitlines() if line.startswith("| sample_valid |") and "macro-F1 |" in line)
    assert f"{result['sentiment']['macro_f1']:.4f}" in row
    assert "| sample_valid | 94 | NER entity F1 |" in card and "sentiment recall neg / neu / pos" in card


def test_load_data_drops_test_texts_from_training(corpus: tuple[Path, Path]) -> None:
    args = parse_args(TrainArgs, ["--data", f"finpulse={corpus[0]}", "--data", f"finpulse={VALIDATION}",
                                  "--validation-split", "0", "--test-data", f"held=finpulse={VALIDATION}"], prog="t")
    train, _, summary = load_data(args)
    held = {normalize_text(json.loads(line)["headline"]) for line in VALIDATION.read_text().splitlines()}
    assert len(train) == 48 and not [e for e in train if normalize_text(e.text) in held]
    assert summary["test_sets"] == {"held": 94}


def test_onnx_numbers_are_recorded_beside_torch(corpus: tuple[Path, Path], tiny_model_dir: Path,
                                                tmp_path: Path) -> None:
    from tests.finetune.train_helpers import run_train

    result = run_train("--data", f"finpulse={corpus[0]}", "--validation-data", f"finpulse={corpus[1]}",
                       "--test-data", f"head=finpulse={corpus[1]}", "--base-model", str(tiny_model_dir),
                       "--max-steps", "2", "--batch-size", "8", "--max-length", "32", "--precision", "fp32",
                       "--models-dir", str(tmp_path), onnx=True)
    recorded = json.loads((result.path / "metrics.json").read_text())["tests"]["head"]
    manifest = json.loads((result.path / "finpulse_model.json").read_text())
    served = "int8" if manifest["onnx"]["int8_gate"]["passed"] else "fp32"
    assert recorded["onnx"]["precision"] == served
    # fp32 ONNX agrees with torch fp32; int8 may differ a little, but measures the same tasks.
    assert set(recorded["onnx"]) >= {"sentiment", "ner", "entity_sentiment"}
    if served == "fp32":
        assert recorded["onnx"]["sentiment"]["macro_f1"] == pytest.approx(recorded["sentiment"]["macro_f1"], abs=1e-6)
    assert f"ONNX Runtime ({served})" in (result.path / "README.md").read_text()


@pytest.mark.parametrize(("spec", "expected"), [
    ("tfns=../x.csv", "expected NAME=KIND=PATH"),
    ("bad name=tfns=x.csv", "expected NAME=KIND=PATH"),
    ("a=nope=x.csv", "unknown kind 'nope'"),
    ("a=text=x.csv", "unlabelled"),
])
def test_malformed_test_specs_are_one_line_errors(spec: str, expected: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_args(TrainArgs, ["--data", "tfns=x.csv", "--test-data", spec], prog="finpulse train")
    one_line_error(excinfo, expected)


def test_a_test_set_name_is_used_once() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_args(TrainArgs, ["--data", "tfns=x.csv", "--test-data", "a=tfns=x.csv", "--test-data", "a=tfns=y.csv"],
                   prog="finpulse train")
    one_line_error(excinfo, "['a']", "used twice")
