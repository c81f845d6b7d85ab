"""Knowledge distillation: the student learns the teacher's soft targets, across two different tokenizers.

The teacher is the tiny random BERT (MiniLM's uncased word pieces) trained for a few steps on the corpus slice, so
its predictions are opinions of its own; the student is another tiny BERT with a byte-level BPE built here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from finetune.align import SoftTargets
from finetune.args import TrainArgs, parse_args
from finetune.distill import Distiller, build_distiller
from finetune.features import Features, collate, encode
from finetune.model import MultitaskModel, multitask_loss
from finetune.train import TrainResult, load_data
from tests.finetune.distill_helpers import headlines, make_bpe_student, write_texts
from tests.finetune.train_helpers import run_cli, run_train

TEACHER_FLAGS = ("--max-length", "32", "--batch-size", "8", "--no-calibrate")


@pytest.fixture(scope="module")
def teacher(corpus: tuple[Path, Path], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return run_train("--data", f"finpulse={corpus[0]}", "--validation-data", f"finpulse={corpus[1]}",
                     "--base-model", str(tiny_model_dir), "--max-steps", "12", "--learning-rate", "1e-2",
                     "--eval-steps", "12", "--version", "teacher", "--models-dir",
                     str(tmp_path_factory.mktemp("teachers")), *TEACHER_FLAGS)


@pytest.fixture(scope="module")
def student_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bpe_student(tmp_path_factory.mktemp("bpe-student"))


def kd_parts(model: MultitaskModel, distiller: Distiller, features: list[Features], pad_id: int) -> dict[str, float]:
    """The distillation loss of ``model`` (dropout off) over every example, total and per head."""
    model.eval()
    batch = collate(features, pad_id)
    with torch.no_grad():
        outputs = model(batch["input_ids"], batch["attention_mask"], casing_ids=batch["casing_ids"])
        total, parts = distiller.kd_loss(model, outputs, range(len(features)))
    return {"total": float(total), **parts}


def test_student_moves_toward_the_teacher_on_unlabelled_text(teacher: TrainResult, student_base: Path,
                                                             tmp_path: Path) -> None:
    texts = write_texts(tmp_path / "texts.csv", headlines("validation"))
    argv = ["--data", f"text={texts}", "--base-model", str(student_base), "--teacher", str(teacher.path),
            "--distill-alpha", "0", "--max-steps", "20", "--learning-rate", "5e-3", "--batch-size", "16",
            "--max-length", "32", "--models-dir", str(tmp_path / "models"), "--version", "student"]
    args = parse_args(TrainArgs, ["--database-url", "none", *argv], prog="finpulse train")
    train, valid, summary = load_data(args)
    assert not valid and len(train) == summary["unlabelled"] == 94  # unlabelled text measures nothing: all train
    tokenizer = AutoTokenizer.from_pretrained(student_base)
    distiller = build_distiller(args, train, valid, tokenizer, torch.device("cpu"), None)
    features = encode(train, tokenizer, args.max_length)
    torch.manual_seed(args.seed)  # the student's initialisation in training
    student = MultitaskModel.from_base(str(student_base), casing=True)  # as training starts it
    before = kd_parts(student, distiller, features, tokenizer.pad_token_id)
    result = run_train(*argv)
    after = kd_parts(MultitaskModel.load(result.path), distiller, features, tokenizer.pad_token_id)
    assert set(before) == {"total", "sentiment", "ner", "entity"}  # the teacher's own spans train the entity head
    assert after["total"] < 0.5 * before["total"], (before, after)
    assert all(after[head] < before[head] for head in ("sentiment", "ner", "entity")), (before, after)
    record = result.metrics["distillation"]
    assert record["teacher"]["version"] == "teacher" and record["teacher"]["path"] == str(teacher.path.resolve())
    assert record["teacher"]["base_model"] == teacher.train_args["base_model"]
    assert (record["alpha"], record["temperature"], record["unlabelled_examples"]) == (0.0, 2.0, 94)
    # spans the teacher found, less those beyond the student's 32 tokens (the small BPE splits words finely)
    assert 0 < record["entity_targets"] <= record["teacher_found_spans"] and record["teacher_validation"] == {}
    manifest = json.loads((result.path / "finpulse_model.json").read_text())
    assert manifest["distillation"]["teacher"]["version"] == "teacher" and manifest["distillation"]["alpha"] == 0.0
    assert "Distilled from the teacher `teacher`" in (result.path / "README.md").read_text()


def test_the_loss_follows_the_soft_targets(teacher: TrainResult, student_base: Path, corpus: tuple[Path, Path],
                                           tmp_path: Path) -> None:
    args = parse_args(TrainArgs, ["--data", f"finpulse={corpus[1]}", "--teacher", str(teacher.path),
                                  "--max-length", "32", "--validation-split", "0"], prog="finpulse train")
    train, valid, _ = load_data(args)
    tokenizer = AutoTokenizer.from_pretrained(student_base)
    distiller = build_distiller(args, train, valid, tokenizer, torch.device("cpu"), None)
    model = MultitaskModel.from_base(str(student_base)).eval()
    batch = collate(encode(train, tokenizer, args.max_length), tokenizer.pad_token_id)
    ids = range(len(train))
    outputs = model(batch["input_ids"], batch["attention_mask"], batch["span_index"])
    hard, hard_parts = multitask_loss(outputs, batch)
    head = model.sentiment_head.weight

    def loss_and_grad(d: Distiller) -> tuple[float, torch.Tensor]:
        loss, parts = d.combine(model, outputs, ids, hard, hard_parts)
        assert {"sentiment", "ner", "entity", "kd_sentiment", "kd_ner", "kd_entity"} <= set(parts)
        return float(loss.detach()), torch.autograd.grad(loss, head, retain_graph=True)[0]

    loss, grad = loss_and_grad(distiller)
    # The same student against a teacher of opposite opinions: another loss and another gradient.
    flipped = Distiller([SoftTargets(t.doc.flip(0), t.ner_tokens, t.ner.flip(-1), t.spans, t.entity.flip(-1))
                         for t in distiller.targets], distiller.alpha, distiller.temperature)
    other_loss, other_grad = loss_and_grad(flipped)
    assert abs(loss - other_loss) > 1e-3 and not torch.allclose(grad, other_grad)
    # A teacher that agrees with the student exactly: the soft term is zero and only the hard labels remain.
    temperature = distiller.temperature
    agreeing = Distiller([SoftTargets(
        torch.softmax(outputs.sentiment[row].detach() / temperature, -1), t.ner_tokens,
        torch.softmax(outputs.ner[row, t.ner_tokens].detach() / temperature, -1), t.spans,
        torch.softmax(model.span_logits(outputs.hidden, outputs.pooled, torch.tensor(
            [[row, s, e] for s, e in t.spans], dtype=torch.long).reshape(-1, 3)).detach() / temperature, -1))
        for row, t in enumerate(distiller.targets)], distiller.alpha, temperature)
    soft, _ = agreeing.kd_loss(model, outputs, ids)
    assert abs(float(soft.detach())) < 1e-5
    assert loss_and_grad(agreeing)[0] == pytest.approx(distiller.alpha * float(hard.detach()), abs=1e-5)
    # alpha = 1 ignores the teacher; alpha = 0 ignores the labels.
    def value(d: Distiller, hard_loss: torch.Tensor) -> float:
        return float(d.combine(model, outputs, ids, hard_loss, {})[0].detach())

    assert value(Distiller(distiller.targets, 1.0, temperature), hard) == pytest.approx(float(hard.detach()))
    only_soft = Distiller(distiller.targets, 0.0, temperature)
    assert value(only_soft, hard) == value(only_soft, hard * 0) == pytest.approx(
        float(distiller.kd_loss(model, outputs, ids)[0].detach()))


def test_labelled_and_unlabelled_data_train_together(teacher: TrainResult, tiny_model_dir: Path,
                                                     corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """The same tokenizer on both sides, labelled data with a validation split: the teacher's validation numbers
    are recorded beside the student's, and unlabelled texts the split drew go back to training."""
    texts = write_texts(tmp_path / "texts.csv", headlines("validation", 40))
    result = run_train("--data", f"finpulse={corpus[0]}", "--data", f"text={texts}?weight=0.5",
                       "--base-model", str(tiny_model_dir), "--teacher", str(teacher.path), "--max-steps", "3",
                       "--models-dir", str(tmp_path), *TEACHER_FLAGS)
    summary = result.train_args["data_summary"]
    assert summary["unlabelled"] == 40 and summary["train"] + summary["validation"] == 48 + 40
    record = result.metrics["distillation"]
    assert record["examples"] == summary["train"] and record["alpha"] == 0.5
    assert set(record["teacher_validation"]) == set(result.metrics["validation"]) == {
        "sentiment", "ner", "entity_sentiment"}
    assert "The teacher on the same validation data: sentiment macro_f1" in (result.path / "README.md").read_text()


def test_bad_teacher_and_unlabelled_text_without_one_are_one_line_errors(
        corpus: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    base = ("train", "--data", f"finpulse={corpus[0]}", "--database-url", "none", "--models-dir", str(tmp_path))
    for teacher, reason in ((tmp_path, "not a finpulse multi-task model"), (tmp_path / "nope", "no such directory")):
        code, _, err = run_cli(monkeypatch, capsys, *base, "--teacher", str(teacher))
        assert code == 2 and err.strip().splitlines()[-1] == (
            f"error: --teacher {teacher}: {reason}"
            + ("" if "no such" in reason else " (no model.safetensors with a finpulse_model.json of kind 'multitask')")
            + "; pass a `finpulse train` output directory (train the teacher first, e.g. "
            "`finpulse train --base-model all-mpnet-base-v2 --data ...`)")
    texts = write_texts(tmp_path / "texts.csv", ["Acme jumps", "Beta slides"])
    code, _, err = run_cli(monkeypatch, capsys, *base, "--data", f"text={texts}")
    assert code == 2 and err.strip().splitlines()[-1] == (
        "error: text= sources are unlabelled and train only through distillation; pass --teacher DIR "
        "(a `finpulse train` output) or drop the text= sources")
    code, _, err = run_cli(monkeypatch, capsys, *base, "--distill-alpha", "1.5")
    assert code == 2 and "--distill-alpha must be in [0, 1]; fix the flag" in err.strip().splitlines()[-1]


def test_the_shipped_student_config_is_the_benchmark_plus_unlabelled_text() -> None:
    from tests.finetune.train_helpers import CONFIGS

    student = parse_args(TrainArgs, ["--config", str(CONFIGS / "distill_student.yaml"), "--teacher", "t"],
                         prog="finpulse train")
    teacher = parse_args(TrainArgs, ["--config", str(CONFIGS / "benchmark_mpnet.yaml")], prog="finpulse train")
    # the teacher's validation split is the student's: same labelled sources, seed and fraction
    assert [s.split("?")[0] for s in student.data if not s.startswith("text=")] == [
        s.split("?")[0] for s in teacher.data]
    assert (student.seed, student.validation_split) == (teacher.seed, teacher.validation_split)
    assert student.exclude_data == teacher.exclude_data and student.base_model == "all-MiniLM-L6-v2"
    assert [s.split("?")[0] for s in student.data if s.startswith("text=")] == [
        "text=../shared/data/stocknet_stream/stocknet_tweets_stream.csv", "text=../shared/data/sentfin/SEntFiN.csv"]
    assert (student.distill_alpha, student.distill_temperature) == (0.5, 2.0)
