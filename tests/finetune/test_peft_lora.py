"""``finpulse train --peft lora`` on a tiny real model: the merged version serves exactly like the saved adapter
applied to its parent with peft; the adapter is a small safetensors file; bad LoRA arguments are one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetune.args import TrainArgs, parse_args
from finetune.export import save_version
from finetune.model import MultitaskModel
from finetune.model_dir import ADAPTER_DIR, check_multitask_dir
from finetune.peft_lora import LoraTraining, apply_adapter
from monitor.core.errors import ConfigError
from monitor.scoring.scorer import load_scorer
from tests.finetune.train_helpers import run_cli, run_train
from tests.helpers import one_line_error, write

TEXTS = ["Tata Motors surges while Maruti slumps", "Infosys shares fall after weak guidance",
         "Fed holds rates steady", "Reliance to raise Rs 5,000 crore via bonds in a record issue"]
SPANS = torch.tensor([[0, 1, 3], [1, 1, 2], [3, 1, 2]])  # (text, first token, end token) for the entity head
BERT_BLOCK_LINEARS = {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                      "intermediate.dense", "output.dense"}


@pytest.fixture(scope="module")
def lora_version(corpus: tuple[Path, Path], tiny_model_dir: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(parent, child): a multi-task parent v0 on the tiny encoder, and v1 trained from it with LoRA."""
    models = tmp_path_factory.mktemp("models")
    torch.manual_seed(7)
    parent = save_version(MultitaskModel.from_base(str(tiny_model_dir)), AutoTokenizer.from_pretrained(tiny_model_dir),
                          models, "v0", base_model=str(tiny_model_dir), max_length=32, train_args={}, metrics={},
                          data_summary={})
    train, valid = corpus
    result = run_train("--data", f"finpulse={train}", "--validation-data", f"finpulse={valid}",
                       "--init-model", str(parent), "--parent-version", "v0", "--peft", "lora", "--max-steps", "8",
                       "--batch-size", "8", "--learning-rate", "3e-3", "--max-length", "32", "--precision", "fp32",
                       "--device", "cpu", "--models-dir", str(models), "--version", "v1")
    return parent, result.path


def _outputs(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, torch.Tensor]:
    encoding = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        out = model(encoding["input_ids"], encoding["attention_mask"], SPANS)
    return {"sentiment": out.sentiment, "ner": out.ner, "entity": out.entity}


def test_lora_version_serves_like_the_adapter_on_its_parent(lora_version: tuple[Path, Path]) -> None:
    parent, child = lora_version
    peft = check_multitask_dir(child)["peft"]
    assert peft["method"] == "lora" and peft["rank"] == 8 and peft["alpha"] == 16
    assert set(peft["targets"]) == BERT_BLOCK_LINEARS  # attention q/k/v/output and both FFN layers, by default
    assert peft["parent_version"] == "v0" and peft["parent_path"] == str(parent)

    # The normal serving loader reads the merged model.safetensors; peft applies the saved adapter to the parent.
    scorer = load_scorer(child, device="cpu", precision="fp32", backend="torch", max_length=32)
    adapted = apply_adapter(MultitaskModel.load(parent), child).eval()
    expected = _outputs(adapted, scorer.tokenizer)
    served_probs = [prediction.probs for prediction in scorer.score(TEXTS)]
    torch.testing.assert_close(torch.tensor(served_probs), torch.softmax(expected["sentiment"], -1),
                               atol=1e-5, rtol=0)
    merged = _outputs(MultitaskModel.load(child), scorer.tokenizer)
    for head in ("sentiment", "ner", "entity"):
        torch.testing.assert_close(merged[head], expected[head], atol=1e-5, rtol=0)

    # Training did move the model, so the agreement above is not that of two unchanged copies.
    before = _outputs(MultitaskModel.load(parent), scorer.tokenizer)
    assert float((before["sentiment"] - merged["sentiment"]).abs().max()) > 1e-3


def test_head_changes_after_merging_go_into_the_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Calibration adjusts the heads' biases after the merge; the saved adapter must carry that too."""
    torch.manual_seed(3)
    parent = MultitaskModel.from_base(str(tiny_model_dir))
    (tmp_path / "parent").mkdir()
    parent.save(tmp_path / "parent")
    args = parse_args(TrainArgs, ["--data", "tfns=x.csv", "--peft", "lora", "--lora-rank", "2"], prog="t")
    lora = LoraTraining(parent, args)
    with torch.no_grad():  # stand-ins for trained adapters (LoRA's B starts at zero, a no-op)
        for name, weight in parent.named_parameters():
            if ".lora_B." in name:
                weight.normal_(0, 0.05)
    merged = lora.merge()
    with torch.no_grad():
        merged.sentiment_head.bias.add_(torch.tensor([0.5, -0.25, 0.0]))  # what calibrate() folds in
    (tmp_path / "child").mkdir()
    record = lora.save(tmp_path / "child")
    assert record["rank"] == 2 and record["adapter_file"] == "adapter/adapter_model.safetensors"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = _outputs(merged.eval(), tokenizer)
    rebuilt = _outputs(apply_adapter(MultitaskModel.load(tmp_path / "parent"), tmp_path / "child").eval(), tokenizer)
    for head in ("sentiment", "ner", "entity"):
        torch.testing.assert_close(rebuilt[head], expected[head], atol=1e-5, rtol=0)


def test_adapter_is_small_safetensors_with_a_manifest_record(lora_version: tuple[Path, Path]) -> None:
    _, child = lora_version
    peft = check_multitask_dir(child)["peft"]
    adapter = child / peft["adapter_file"]
    assert adapter.parent == child / ADAPTER_DIR and adapter.name == "adapter_model.safetensors"
    assert adapter.stat().st_size == peft["adapter_bytes"]
    assert hashlib.sha256(adapter.read_bytes()).hexdigest() == peft["adapter_sha256"]
    full = (child / "model.safetensors").stat().st_size
    assert peft["adapter_bytes"] < 0.05 * full  # LoRA matrices and the heads only; the frozen encoder is not in it
    with safe_open(str(adapter), "pt") as handle:
        keys = list(handle.keys())
    assert any(".lora_A." in key for key in keys) and any(".lora_B." in key for key in keys)
    assert {key.split(".")[2] for key in keys if "_head." in key} == {"sentiment_head", "ner_head", "entity_head"}
    assert not any("embeddings" in key or "LayerNorm" in key for key in keys)
    config = json.loads((adapter.parent / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and set(config["target_modules"]) == BERT_BLOCK_LINEARS
    assert not (child / "adapter_config.json").exists()  # transformers would take the version for a bare adapter
    assert not [p for p in child.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    counts = json.loads((child / "metrics.json").read_text())["peft"]
    assert 0 < counts["lora_parameters"] < counts["trainable_parameters"] < counts["model_parameters"] / 10
    assert "LoRA (rank 8" in (child / "README.md").read_text()


@pytest.mark.parametrize(("flags", "part"), [
    (["--peft", "qlora"], "argument --peft: invalid choice: 'qlora'"),
    (["--peft", "lora", "--lora-rank", "0"], "--lora-rank must be >= 1"),
    (["--peft", "lora", "--lora-rank", "-2"], "--lora-rank must be >= 1"),
    (["--peft", "lora", "--lora-dropout", "1"], "--lora-dropout must be in [0, 1)"),
    (["--lora-rank", "four"], "argument --lora-rank: invalid int value: 'four'"),
])
def test_bad_lora_arguments_are_one_line_cli_errors(flags: list[str], part: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "train", "--data", f"tfns={tmp_path / 'x.csv'}", "--database-url",
                           "none", *flags)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and part in lines[0], err


def test_bad_lora_config_values_and_targets(tmp_path: Path, corpus: tuple[Path, Path], tiny_model_dir: Path) -> None:
    config = write(tmp_path / "c.yaml", "data: [tfns=a.csv]\npeft: qlora\n")
    with pytest.raises(ConfigError) as excinfo:
        parse_args(TrainArgs, ["--config", str(config)], prog="t")
    one_line_error(excinfo, str(config), "peft='qlora'", "expected one of none, lora")
    with pytest.raises(ConfigError) as excinfo:
        run_train("--data", f"finpulse={corpus[0]}", "--base-model", str(tiny_model_dir), "--peft", "lora",
                  "--lora-targets", "no_such_layer", "--models-dir", str(tmp_path), "--max-steps", "1")
    one_line_error(excinfo, "--lora-targets no_such_layer")
