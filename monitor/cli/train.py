"""``finpulse train``, ``finpulse eval`` and ``finpulse train-bench``; registered on the main app by
:func:`register`. Options of train/eval come from the dataclasses in :mod:`finetune.args` (``--help`` lists them)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def train_command(ctx: typer.Context) -> None:
    """Fine-tune the multi-task model (sentiment, NER, entity sentiment); `finpulse train --help` lists options."""
    from finetune.args import TrainArgs, parse_args  # lazy: startup
    from monitor.lifecycle.training import train_and_register  # lazy: torch

    if any(arg == "--preset" or arg.startswith("--preset=") for arg in ctx.args):
        _preset(ctx.args)
        return
    args = parse_args(TrainArgs, ctx.args, prog="finpulse train")
    result = train_and_register(args)
    summary = {
        "version": result.version, "path": str(result.path), "registry_status": result.status,
        "steps": result.metrics["steps"], "epochs": round(result.metrics["epochs"], 3),
        "seconds_per_epoch": round(result.metrics["seconds_per_epoch"], 1),
        "best_score": result.metrics["best_score"],
        "validation": {task: {k: v for k, v in values.items() if isinstance(v, float | int)}
                       for task, values in result.metrics["validation"].items()},
    }
    if result.metrics.get("tests"):
        from finetune.testsets import headline  # lazy: torch

        summary["tests"] = {name: headline(values) for name, values in result.metrics["tests"].items()}
    typer.echo(json.dumps(summary, indent=2))


def _preset(argv: list[str]) -> None:
    """``finpulse train --preset finance [--data-dir DIR] ...``: stage lines on stderr, a JSON summary on stdout."""
    from finetune.preset import parse_preset_args  # lazy: startup
    from finetune.testsets import headline  # lazy: torch
    from monitor.lifecycle.training import train_preset_and_register  # lazy: torch

    result = train_preset_and_register(parse_preset_args(argv), lambda line: typer.echo(line, err=True))
    record = result.metrics["preset"]
    summary = {
        "version": result.version, "path": str(result.path), "registry_status": result.status,
        "stages": [{k: stage[k] for k in ("stage", "version", "path", "base_model", "wall_seconds", "reused")}
                   for stage in record["stages"]],
        "wall_seconds": record["wall_seconds"],
        "tests": {name: headline(values) for name, values in (result.metrics.get("tests") or {}).items()},
    }
    typer.echo(json.dumps(summary, indent=2))


def eval_command(ctx: typer.Context) -> None:
    """Evaluate a model directory on labelled data and print JSON metrics; `finpulse eval --help` lists options."""
    from finetune.args import EvalArgs, parse_args  # lazy: startup
    from finetune.data.sources import ColumnDefaults, DataSpec, load_sources  # lazy: startup
    from finetune.data.splits import subsample  # lazy: startup
    from finetune.evaluate import evaluate_dir  # lazy: torch
    from finetune.model_dir import check_multitask_dir  # lazy: startup
    from finetune.onnx_export import compare_with_torch  # lazy: torch
    from monitor.core.errors import ConfigError  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    args = parse_args(EvalArgs, ctx.args, prog="finpulse eval")

    check_multitask_dir(Path(args.model))  # before reading data: a wrong --model fails fast
    defaults = ColumnDefaults(args.text_column, args.label_column, args.label_map)
    examples = subsample(load_sources([DataSpec.parse(s) for s in args.data], defaults), args.max_eval_samples, 0)
    max_length = args.max_length or get_settings().max_seq_length
    if args.backend == "onnx":
        report = compare_with_torch(Path(args.model), examples, max_length=max_length, batch_size=args.eval_batch_size)
    elif args.backend == "torch":
        report = evaluate_dir(Path(args.model), examples, device=args.device, precision=args.precision,
                              max_length=max_length, batch_size=args.eval_batch_size)
    else:
        raise ConfigError(f"--backend {args.backend!r}: expected torch or onnx")
    report["data"] = list(args.data)
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    typer.echo(text)


def train_bench_command(
    base_model: Annotated[str, typer.Option(help="Encoder to time.")] = "all-MiniLM-L6-v2",
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per precision per round.")] = 10,
    rounds: Annotated[int, typer.Option(min=1, help="Alternating fp32/bf16 rounds.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per step.")] = 32,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens per text.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0 = torch's default).")] = 0,
) -> None:
    """Time multi-task training steps in fp32 and bf16 side by side and print the speed ratio as JSON."""
    from finetune.bench import train_speed  # lazy: torch

    result = train_speed(base_model=base_model, steps=steps, rounds=rounds, batch_size=batch_size,
                         max_length=max_length, device=device, threads=threads)
    typer.echo(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    app.command("train", context_settings=_PASS_THROUGH, add_help_option=False)(train_command)
    app.command("eval", context_settings=_PASS_THROUGH, add_help_option=False)(eval_command)
    app.command("train-bench")(train_bench_command)
