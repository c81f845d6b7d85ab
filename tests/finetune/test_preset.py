"""``finpulse train --preset finance``: the shipped teacher and student configs, run in order on a tiny copy of the
data directory (installed by the real ``fetch --from``), MiniLM as both teacher and student, two steps each; and the
one-line refusals (no data directory, an incomplete one, mpnet missing, a flag the preset does not take)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from finetune.args import TrainArgs, load_config
from finetune.base_model import MPNET, cache_dir, split_archive_parts
from finetune.preset import PRESETS
from monitor.core import db
from monitor.core.errors import ModelLoadError
from monitor.core.settings import get_settings
from monitor.lifecycle import registry
from tests.finetune.preset_helpers import tiny_data_dir
from tests.finetune.train_helpers import CONFIGS, run_cli

TEST_SETS = {"tfns_valid", "sentfin_heldout", "sentfin_doc_heldout", "finer_ord_valid", "sec_fin3"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    db.upgrade(url)
    monkeypatch.setenv("FINPULSE_DATABASE_URL", url)
    monkeypatch.setenv("FINPULSE_MODELS_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_preset_trains_teacher_then_student_and_registers_only_the_student(
        env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_data_dir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "train", "--preset", "finance", "--data-dir", str(data),
                             "--max-steps", "2", "--teacher-base-model", "all-MiniLM-L6-v2", "--no-onnx")
    assert code == 0, err
    summary = json.loads(out)
    teacher_stage, student_stage = summary["stages"]
    assert [teacher_stage["stage"], student_stage["stage"]] == ["teacher", "student"]
    assert teacher_stage["version"] == f"{summary['version']}-teacher" and not teacher_stage["reused"]
    assert teacher_stage["wall_seconds"] > 0 and student_stage["wall_seconds"] > 0
    assert f"stage 1/2 teacher: done in {teacher_stage['wall_seconds']:.1f} s wall" in err
    assert "stage 2/2 student: done in" in err and set(summary["tests"]) == TEST_SETS

    # Only the student is registered, and it is the champion.
    rows = registry.list_versions(env)
    assert [(row.version, row.status) for row in rows] == [(summary["version"], "champion")]
    student = Path(summary["path"])
    teacher = Path(teacher_stage["path"])
    assert teacher.parent == student.parent == tmp_path / "models" and (teacher / "model.safetensors").is_file()

    metrics = json.loads((student / "metrics.json").read_text())
    assert metrics == {**rows[0].metrics, "history": metrics["history"]}  # the registry has the same record
    assert metrics["distillation"]["teacher"]["path"] == str(teacher)
    assert metrics["distillation"]["unlabelled_examples"] == 20  # the English rows of the tiny StockNet stream
    assert set(metrics["tests"]) == TEST_SETS
    assert "sentiment" in metrics["tests"]["tfns_valid"] and "ner" in metrics["tests"]["finer_ord_valid"]
    assert "entity_sentiment" in metrics["tests"]["sentfin_heldout"] and "ner" in metrics["tests"]["sec_fin3"]
    assert "sentiment" in metrics["tests"]["sentfin_doc_heldout"]
    preset = metrics["preset"]
    assert preset["name"] == "finance" and preset["data_dir"] == str(data.resolve())
    assert [s["wall_seconds"] for s in preset["stages"]] == [teacher_stage["wall_seconds"],
                                                             student_stage["wall_seconds"]]
    assert preset["wall_seconds"] >= sum(s["wall_seconds"] for s in preset["stages"]) - 0.2
    assert set(preset["stages"][0]["tests"]) == TEST_SETS  # the teacher's numbers, beside the student's

    args = json.loads((student / "training_args.json").read_text())
    assert args["max_steps"] == 2 and args["base_model"] == "all-MiniLM-L6-v2" and args["promote"]
    assert all(spec.split("=", 1)[1].startswith(str(data)) for spec in args["data"])
    teacher_args = json.loads((teacher / "training_args.json").read_text())
    assert teacher_args["register"] is False and teacher_args["test_data"] == args["test_data"]
    card = (student / "README.md").read_text()
    assert "## Recipe" in card and f"{teacher_stage['wall_seconds']:.1f} s wall" in card
    assert "| teacher |" in card and "| tfns_valid |" in card

    # --teacher reuses a trained teacher: only the student stage runs, and the new student becomes champion.
    code, out, err = run_cli(monkeypatch, capsys, "train", "--preset", "finance", "--data-dir", str(data),
                             "--max-steps", "1", "--teacher", str(teacher), "--no-onnx")
    assert code == 0, err
    again = json.loads(out)
    assert again["stages"][0] == {"stage": "teacher", "version": teacher.name, "path": str(teacher),
                                  "base_model": "all-MiniLM-L6-v2", "wall_seconds": 0.0, "reused": True}
    assert f"stage 1/2 teacher: reusing {teacher}" in err and "stage 2/2 student: done in" in err
    assert {row.version: row.status for row in registry.list_versions(env)} == {
        summary["version"]: "retired", again["version"]: "champion"}


def _error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = run_cli(monkeypatch, capsys, "train", "--preset", "finance", *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_a_missing_or_incomplete_data_directory_names_the_fetch(
        env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    line = _error(monkeypatch, capsys, "--data-dir", str(missing))
    assert "no manifest.json" in line and f"`finpulse data fetch --dest {missing}`" in line
    data = tiny_data_dir(tmp_path)
    (data / "finer_ord/finer_ord_train.conll").unlink()
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if f["name"] != "sec_ner/FIN3_test.txt"]
    (data / "manifest.json").write_text(json.dumps(manifest))
    line = _error(monkeypatch, capsys, "--data-dir", str(data))
    assert "finer_ord/finer_ord_train.conll (changed or gone)" in line and "sec_ner/FIN3_test.txt (not fetched)" in line
    assert f"fix: run `finpulse data fetch --dest {data}`" in line
    assert not (tmp_path / "models").exists()  # refused before anything was trained


def _mpnet_installed() -> bool:
    if (cache_dir() / MPNET / "model.safetensors").is_file():
        return True
    try:
        split_archive_parts()
    except ModelLoadError:
        return False
    return True


def test_unknown_flags_and_missing_mpnet_are_one_line_errors(
        env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_data_dir(tmp_path)
    line = _error(monkeypatch, capsys, "--data-dir", str(data), "--epochs", "9")
    assert "unrecognized arguments: --epochs 9" in line and "finance_student.yaml" in line
    if _mpnet_installed():
        pytest.skip(f"{MPNET} is installed here, so the preset does not refuse it")
    line = _error(monkeypatch, capsys, "--data-dir", str(data))
    assert MPNET in line and "not installed" in line and "`make install-mpnet`" in line


def test_the_preset_configs_read_the_data_directory_and_share_their_test_sets() -> None:
    teacher, student = (load_config(CONFIGS / name, TrainArgs) for name in PRESETS["finance"])
    assert (teacher["base_model"], student["base_model"]) == (MPNET, "all-MiniLM-L6-v2")
    assert teacher["test_data"] == student["test_data"] and len(teacher["test_data"]) == len(TEST_SETS)
    assert [s for s in student["data"] if not s.startswith("text=")] == teacher["data"]
    assert not [s for s in teacher["data"] + student["data"] + student["test_data"] if "shared/data" in s]
