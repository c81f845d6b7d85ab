"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.finetune.train_helpers import SAMPLE


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
