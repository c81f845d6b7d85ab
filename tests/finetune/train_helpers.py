"""Shared by the training tests: a slice of the sample corpus, and running training or the CLI in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from finetune.args import TrainArgs, parse_args
from finetune.train import TrainResult, train

SAMPLE = Path(__file__).resolve().parents[2] / "finetune" / "sample_data"
CONFIGS = Path(__file__).resolve().parents[2] / "finetune" / "configs"


def run_train(*argv: str, onnx: bool = False) -> TrainResult:
    """Train in-process; the ONNX export only where a test asks for it (it takes seconds even for a tiny model)."""
    flags = ["--no-progress", "--database-url", "none", *([] if onnx else ["--no-onnx"])]
    return train(parse_args(TrainArgs, [*flags, *argv], prog="finpulse train"))


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from monitor.app import main

    monkeypatch.setattr(sys, "argv", ["finpulse", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err
