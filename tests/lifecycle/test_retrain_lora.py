"""Retraining with ``FINPULSE_RETRAIN_PEFT=lora`` on a tiny real model: LoRA from the champion, through the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from finetune.model import MultitaskModel
from finetune.model_dir import read_manifest
from finetune.peft_lora import apply_adapter
from monitor.core import db
from monitor.lifecycle import registry
from monitor.lifecycle.retrain import retrain
from tests.lifecycle.test_retrain import run_cli
from tests.retrain_helpers import add_labels, make_champion, retrain_settings, settings_env


def test_lora_retraining_from_the_champion_goes_through_the_gate(
    sqlite_url: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db.upgrade(sqlite_url)  # SQLite only: the gate and registry are the same code on PostgreSQL (test_retrain.py)
    settings = retrain_settings(sqlite_url, tmp_path)
    champion_dir = make_champion(sqlite_url, settings.models_dir, tiny_model_dir)
    engine = db.make_engine(sqlite_url)

    # Learnable labels: the LoRA candidate beats the champion on gold and is promoted (the setting via the CLI).
    add_labels(engine, 0, 60)
    code, out, err = run_cli(monkeypatch, capsys, {**settings_env(settings), "FINPULSE_RETRAIN_PEFT": "lora"},
                             "retrain", "--version", "v1")
    assert code == 0, err
    assert json.loads(out)["status"] == "promoted"
    v1 = {row.version: row for row in registry.list_versions(engine)}["v1"]
    assert v1.status == "champion" and v1.parent_version == "v0"
    assert v1.train_args["peft"] == "lora" and v1.train_args["init_model"] == str(champion_dir)
    gate = v1.gate or {}
    assert gate["decision"] == "promoted" and gate["champion_version"] == "v0"
    assert gate["gold"]["candidate"] > gate["gold"]["champion"]
    peft = read_manifest(Path(v1.path))["peft"]
    assert peft["parent_version"] == "v0" and peft["adapter_bytes"] > 0
    assert v1.metrics["peft"]["trainable_parameters"] < v1.metrics["peft"]["model_parameters"]

    # The stored adapter on the old champion is the new champion: what a cheap rollback/rebuild relies on.
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.inference_mode():
        served = MultitaskModel.load(Path(v1.path))(ids, torch.ones_like(ids))
        rebuilt = apply_adapter(MultitaskModel.load(champion_dir), Path(v1.path)).eval()(ids, torch.ones_like(ids))
    torch.testing.assert_close(served.sentiment, rebuilt.sentiment, atol=1e-5, rtol=0)

    # Wrong training labels: the LoRA candidate is held to the same gate and refused; v1 keeps serving.
    add_labels(engine, 60, 45, wrong_training_labels=True)
    lora = settings.model_copy(update={"retrain_replay_samples": 0, "retrain_peft": "lora"})
    bad = retrain(lora, engine=engine, version="v2")
    assert bad.status == "rejected" and bad.gate is not None and not bad.gate["gold"]["passed"]
    rows = {row.version: row for row in registry.list_versions(engine)}
    assert rows["v2"].status == "candidate" and rows["v1"].status == "champion"
    assert rows["v2"].train_args["peft"] == "lora"
    assert read_manifest(Path(rows["v2"].path))["peft"]["parent_version"] == "v1"
    engine.dispose()
