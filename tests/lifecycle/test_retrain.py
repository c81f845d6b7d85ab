"""Retraining end to end on a tiny real model: skip, promote, refuse a bad candidate, roll back (SQLite and PG)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from monitor.core import db
from monitor.core.settings import get_settings
from monitor.lifecycle import registry
from monitor.lifecycle.gate import decide
from monitor.lifecycle.retrain import retrain
from schemas.registry import LabelledNews
from schemas.retraining import JobRun
from tests.retrain_helpers import add_labels, is_gold, make_champion, retrain_settings, settings_env


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str],
            *argv: str) -> tuple[int, str, str]:
    from monitor.app import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    monkeypatch.setattr(sys, "argv", ["finpulse", *argv])
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        get_settings.cache_clear()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_gate_decisions() -> None:
    common: dict[str, Any] = {"gold_n": 10, "new_n": 5, "champion_version": "v0"}
    ok = decide(gold_candidate=0.795, gold_champion=0.8, new_candidate=0.7, new_champion=0.6, tolerance=0.01,
                min_improvement=0.05, **common)
    assert ok["decision"] == "promoted" and ok["gold"]["passed"] and ok["new_labels"]["passed"]
    assert ok["gold"]["delta"] == pytest.approx(-0.005) and ok["new_labels"]["delta"] == pytest.approx(0.1)
    worse = decide(gold_candidate=0.78, gold_champion=0.8, new_candidate=0.9, new_champion=0.6, tolerance=0.01,
                   min_improvement=0.0, **common)
    assert worse["decision"] == "rejected" and not worse["gold"]["passed"] and "beyond tolerance" in worse["reason"]
    flat = decide(gold_candidate=0.8, gold_champion=0.8, new_candidate=0.62, new_champion=0.6, tolerance=0.01,
                  min_improvement=0.05, **common)
    assert flat["decision"] == "rejected" and "misses min improvement 0.05" in flat["reason"]
    empty = decide(gold_candidate=0.8, gold_champion=0.8, new_candidate=None, new_champion=None, tolerance=0.01,
                   min_improvement=0.0, **common)
    assert empty["decision"] == "rejected" and "no gold labels among the new labels" in empty["reason"]


@pytest.mark.slow
def test_retrain_skips_promotes_refuses_and_rolls_back(
    db_url: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = retrain_settings(db_url, tmp_path)
    make_champion(db_url, settings.models_dir, tiny_model_dir)
    engine = db.make_engine(db_url)

    # Too few labels: skipped, with the reason recorded.
    add_labels(engine, 0, 9)
    skipped = retrain(settings, engine=engine)
    assert skipped.status == "skipped" and "9 new labels" in skipped.reason
    assert "FINPULSE_RETRAIN_MIN_LABELS=20" in skipped.reason
    assert [r.version for r in registry.list_versions(engine)] == ["v0"]

    # Enough learnable labels: the candidate starts from v0, beats it and is promoted (through the CLI).
    ids = add_labels(engine, 9, 51)
    code, out, err = run_cli(monkeypatch, capsys, settings_env(settings), "retrain", "--version", "v1")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["status"] == "promoted" and printed["version"] == "v1"
    rows = {row.version: row for row in registry.list_versions(engine)}
    v0, v1 = rows["v0"], rows["v1"]
    assert (v0.status, v1.status) == ("retired", "champion")
    assert v1.parent_version == "v0" and v1.trained_until_label_id == max(ids)
    assert v1.train_args["init_model"] == str(Path(v0.path)) and v1.train_args["max_steps"] == 40
    gate = v1.gate or {}
    assert gate["decision"] == "promoted" and gate["reason"] and gate["champion_version"] == "v0"
    assert gate["gold"]["candidate"] > gate["gold"]["champion"] and gate["gold"]["passed"]
    assert gate["new_labels"]["candidate"] >= gate["new_labels"]["champion"] and gate["new_labels"]["passed"]
    labels = gate["labels"]
    assert labels["new"] == 60 and labels["new_train"] + labels["new_gold"] == 60 and labels["replay"] == 8
    assert v1.metrics["gold"]["macro_f1"] == gate["gold"]["candidate"] and "validation" in v1.metrics
    assert v1.metrics["reference_distribution"]["source"] == "gold"
    assert v0.metrics["reference_distribution"]["n"] == labels["gold"]  # the old champion's, computed on gold
    with Session(engine) as session:
        splits = dict(session.exec(select(LabelledNews.text, LabelledNews.split)).all())
    assert set(splits.values()) == {"gold", "train"}
    assert all((split == "gold") == is_gold(text) for text, split in splits.items())
    assert labels["new_gold"] == labels["gold"] == sum(split == "gold" for split in splits.values()) > 0
    trained = (settings.models_dir / "v1" / "training_args.json").read_text()
    assert json.loads(trained)["data_summary"]["train"] == labels["new_train"] + labels["replay"]

    # A candidate trained on wrong labels is refused: it stays a candidate and v1 keeps serving.
    add_labels(engine, 60, 45, wrong_training_labels=True)
    bad = retrain(settings.model_copy(update={"retrain_replay_samples": 0}), engine=engine, version="v2")
    assert bad.status == "rejected" and bad.version == "v2"
    rows = {row.version: row for row in registry.list_versions(engine)}
    assert rows["v2"].status == "candidate" and rows["v1"].status == "champion"
    assert rows["v2"].gate is not None and rows["v2"].gate["decision"] == "rejected"
    assert not rows["v2"].gate["gold"]["passed"] and "beyond tolerance" in rows["v2"].gate["reason"]

    with Session(engine) as session:
        runs = session.exec(select(JobRun).where(col(JobRun.job) == "retrain").order_by(col(JobRun.id))).all()
    assert [run.status for run in runs] == ["skipped", "promoted", "rejected"]
    assert all(run.finished_at is not None for run in runs) and runs[2].details["version"] == "v2"

    code, out, _ = run_cli(monkeypatch, capsys, settings_env(settings), "models", "list")
    assert code == 0
    listed = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[1:]}
    assert listed == {"v0": ["retired", "-"], "v1": ["champion", "promoted"], "v2": ["candidate", "rejected"]}
    code, out, _ = run_cli(monkeypatch, capsys, settings_env(settings), "models", "rollback")
    assert code == 0 and "v0 is champion again" in out
    assert registry.champion(engine).version == "v0"  # type: ignore[union-attr]
    code, out, _ = run_cli(monkeypatch, capsys, settings_env(settings), "models", "promote", "v1")
    assert code == 0 and registry.champion(engine).version == "v1"  # type: ignore[union-attr]
    code, _, err = run_cli(monkeypatch, capsys, settings_env(settings), "models", "promote", "v9")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: model version 'v9' is not registered")
    engine.dispose()


def test_init_model_continues_from_the_saved_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    """With a vanishing learning rate, a run started from a model ends where that model was; fresh heads do not."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from finetune.args import TrainArgs, parse_args
    from finetune.export import save_version
    from finetune.model import MultitaskModel
    from finetune.train import train

    torch.manual_seed(123)
    start = save_version(MultitaskModel.from_base(str(tiny_model_dir)), AutoTokenizer.from_pretrained(tiny_model_dir),
                         tmp_path, "start", base_model=str(tiny_model_dir), max_length=32, train_args={}, metrics={},
                         data_summary={})
    data = tmp_path / "data.jsonl"
    data.write_text('{"headline": "Acme shares surge", "sentiment": "positive"}\n' * 4)

    def run(version: str, *extra: str) -> dict[str, torch.Tensor]:
        args = parse_args(TrainArgs, ["--data", f"finpulse={data}", "--base-model", str(tiny_model_dir),
                                      "--learning-rate", "1e-12", "--max-steps", "1", "--validation-split", "0",
                                      "--models-dir", str(tmp_path), "--version", version, "--database-url", "none",
                                      "--no-progress", "--precision", "fp32", *extra], prog="finpulse train")
        return load_file(train(args).path / "model.safetensors")

    before = load_file(start / "model.safetensors")
    continued, fresh = run("continued", "--init-model", str(start)), run("fresh")
    assert all(torch.allclose(continued[k], before[k], atol=1e-6) for k in before)
    assert not torch.allclose(fresh["sentiment_head.weight"], before["sentiment_head.weight"])
