"""Fine-tune the multi-task model: load the sources, train, keep the best checkpoint, calibrate, save a version
directory. Registering the version is :mod:`monitor.lifecycle.training`'s job (``finpulse train`` does both)."""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoTokenizer, get_linear_schedule_with_warmup, set_seed

from finetune.args import TrainArgs, as_json
from finetune.base_model import resolve_base_model
from finetune.calibrate import calibrate, recalibrated
from finetune.data.sources import ColumnDefaults, DataSpec, load_sources
from finetune.data.splits import drop_overlap, split_validation, subsample
from finetune.data.testsets import EvalSet, load_test_sets
from finetune.data.text import settle_unlabelled, unlabelled_to_training
from finetune.device import resolve_device, resolve_dtype
from finetune.distill import build_distiller, check_teacher
from finetune.evaluate import collect, evaluate, report, selection_score
from finetune.examples import Example
from finetune.export import new_version, save_version
from finetune.features import collate, encode, length_grouped_batches
from finetune.model import MultitaskModel, multitask_loss
from finetune.model_dir import check_multitask_dir
from finetune.onnx_export import export_serving
from finetune.peft_lora import LoraTraining
from finetune.testsets import add_onnx_tests, evaluate_tests
from monitor.core.errors import ConfigError, DataError
from monitor.core.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    version: str
    path: Path
    metrics: dict[str, Any]
    train_args: dict[str, Any]  # the resolved arguments, as saved in training_args.json
    status: str | None = None  # registry status, set by monitor.lifecycle.training when registered


def load_data(args: TrainArgs, tests: list[EvalSet] | None = None
              ) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """Training and validation examples (leakage removed, optional caps) and a summary for the model card.
    The test sets (``tests``, read from ``--test-data`` when not given) are excluded like ``--exclude-data``."""
    defaults = ColumnDefaults(args.text_column, args.label_column, args.label_map)
    tests = load_test_sets(args.test_data, defaults) if tests is None else tests
    sources: dict[str, int] = {}
    train: list[Example] = []
    for text in args.data:
        examples = load_sources([DataSpec.parse(text)], defaults)
        sources[text] = len(examples)
        train.extend(examples)
    train = settle_unlabelled(train, args.teacher)
    if args.validation_data:
        valid = load_sources([DataSpec.parse(s) for s in args.validation_data], defaults)
    else:
        train, valid = unlabelled_to_training(*split_validation(train, args.validation_split, args.seed))
    excluded = load_sources([DataSpec.parse(s) for s in args.exclude_data], defaults)
    excluded += [example for test in tests for example in test.examples]
    train = drop_overlap(train, valid + excluded)
    train = subsample(train, args.max_train_samples, args.seed)
    valid = subsample(valid, args.max_eval_samples, args.seed)
    if not train:
        raise DataError(f"no training examples left from {args.data} after the validation split and exclusions")
    tasks: dict[str, int] = {}
    for example in train:
        for task in example.tasks:
            tasks[task] = tasks.get(task, 0) + 1
    summary = {"sources": sources, "train": len(train), "validation": len(valid), "train_tasks": tasks,
               "unlabelled": sum(not example.tasks for example in train),
               **({"test_sets": {test.name: len(test.examples) for test in tests}} if tests else {})}
    log.info("training on %d examples (%s), validating on %d", len(train), tasks, len(valid))
    return train, valid, summary


def _optimizer(model: MultitaskModel, args: TrainArgs) -> torch.optim.Optimizer:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate)


def _calibrate(model: MultitaskModel, tokenizer: Any, valid: list[Example], args: TrainArgs,
               dtype: torch.dtype | None, best: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fold class-prior offsets into the sentiment heads; the best checkpoint's metrics are re-measured with them
    (fitted on the same validation data, so optimistic: the held-out test sets are what to report)."""
    seen = collect(model, tokenizer, valid, max_length=args.max_length, batch_size=args.eval_batch_size, dtype=dtype)
    done = calibrate(model, seen)
    if any(head["applied"] for head in done.values()):
        best = {**best, "metrics": report(recalibrated(seen, done)), "metrics_before_calibration": report(seen)}
    return done, best


def train(args: TrainArgs) -> TrainResult:
    set_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.precision, device)
    models_dir = Path(args.models_dir or get_settings().models_dir)
    version = args.version or new_version(models_dir)
    if (models_dir / version).exists():
        raise ConfigError(f"{models_dir / version} already exists; choose another --version")
    if args.teacher:
        check_teacher(args.teacher)  # a wrong --teacher fails before the data is read
    test_sets = load_test_sets(args.test_data, ColumnDefaults(args.text_column, args.label_column, args.label_map))
    train_examples, valid_examples, summary = load_data(args, test_sets)

    torch.manual_seed(args.seed)  # the heads' initialisation
    if args.init_model:  # continued training (retraining): the saved model's tokenizer, encoder and heads
        check_multitask_dir(Path(args.init_model))
        tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # a local model folder; never the Hub
            args.init_model, trust_remote_code=False, local_files_only=True)
        model = MultitaskModel.load(Path(args.init_model), device)
        if model.reads_casing != args.casing:
            log.info("--init-model %s %s casing; continued training keeps that", args.init_model,
                     "reads" if model.reads_casing else "does not read")
    else:
        tokenizer = AutoTokenizer.from_pretrained(  # nosec B615 # the packaged offline copy, or a Hub id an operator chose
            resolve_base_model(args.base_model), trust_remote_code=False)
        model = MultitaskModel.from_base(args.base_model, casing=args.casing).to(device)
    if args.freeze_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    lora = LoraTraining(model, args) if args.peft == "lora" else None  # adapters go into `model` in place
    features = encode(train_examples, tokenizer, args.max_length)
    lengths = [len(f.input_ids) for f in features]
    distiller = build_distiller(args, train_examples, valid_examples, tokenizer, device, dtype) \
        if args.teacher else None
    weights = [e.weight for e in train_examples]
    steps_per_epoch = max(1, math.ceil(sum(weights) / args.batch_size))
    total_steps = args.max_steps or max(1, math.ceil(args.epochs * steps_per_epoch))
    eval_every = args.eval_steps or steps_per_epoch
    optimizer = lora.optimizer() if lora else _optimizer(model, args)
    scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(args.warmup_ratio * total_steps), total_steps)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else nullcontext
    task_weights = (args.sentiment_weight, args.ner_weight, args.entity_weight)
    rng = random.Random(args.seed)  # nosec B311 # seeded batch shuffling for reproducible training, no secret
    pad_id = int(tokenizer.pad_token_id or 0)
    log.info("training %s on %s (%s): %d steps, %d per epoch", args.base_model, device, dtype or "fp32",
             total_steps, steps_per_epoch)

    step, bad, best_score, train_seconds = 0, 0, -1.0, 0.0
    best_state: dict[str, torch.Tensor] | None = None
    best: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    running: float | None = None
    model.train()
    bar = tqdm(total=total_steps, desc=f"train {version}", unit="step", disable=not args.progress)
    stop = False
    while not stop:
        for batch_ids in length_grouped_batches(lengths, args.batch_size, rng, weights=weights):
            started = time.perf_counter()
            batch = {k: v.to(device) for k, v in collate([features[i] for i in batch_ids], pad_id).items()}
            with autocast():
                outputs = model(batch["input_ids"], batch["attention_mask"], batch["span_index"],
                                casing_ids=batch["casing_ids"])
            loss, parts = multitask_loss(outputs, batch, task_weights)
            if distiller is not None:
                loss, parts = distiller.combine(model, outputs, batch_ids, loss, parts, task_weights)
            if parts:  # a batch whose only labels were truncated away has nothing to learn from
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            train_seconds += time.perf_counter() - started
            step += 1
            value = float(loss.detach())
            running = value if running is None else 0.9 * running + 0.1 * value
            bar.set_postfix({"loss": f"{running:.4f}", **{k: f"{v:.3f}" for k, v in parts.items()}})
            bar.update()
            if valid_examples and (step % eval_every == 0 or step == total_steps):
                metrics = evaluate(model, tokenizer, valid_examples, max_length=args.max_length,
                                   batch_size=args.eval_batch_size, dtype=dtype)
                score = selection_score(metrics, args.selection_metric)
                history.append({"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": running,
                                "score": score})
                log.info("step %d (epoch %.2f): loss %.4f, validation %s %.4f", step, step / steps_per_epoch,
                         running, args.selection_metric, score)
                if score > best_score:
                    best_score, bad, best = score, 0, {"step": step, "metrics": metrics}
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    bad += 1
                    stop = args.patience > 0 and bad >= args.patience
            if stop or step >= total_steps:
                stop = True
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    if lora:  # before calibration, which adjusts the (then plain again) heads
        model = lora.merge()
    model.eval()
    calibration = None
    if args.calibrate and valid_examples:
        calibration, best = _calibrate(model, tokenizer, valid_examples, args, dtype, best)
    epochs_done = step / steps_per_epoch
    metrics = {
        "validation": best.get("metrics", {}), "selection_metric": args.selection_metric,
        # best_score is the selection score before calibration (what early stopping compared)
        "validation_before_calibration": best.get("metrics_before_calibration"),
        "best_score": best_score if best else None, "best_step": best.get("step"), "steps": step,
        "epochs": epochs_done, "train_seconds": train_seconds, "seconds_per_epoch": train_seconds / epochs_done,
        "precision": str(dtype or "fp32"), "device": str(device), "history": history,
        "stopped_early": step < total_steps, "calibration": calibration,
        **({"peft": {"method": "lora", **lora.counts}} if lora else {}),
        **({"distillation": distiller.record} if distiller is not None else {}),
    }
    serving_length = get_settings().max_seq_length  # the test sets are scored as the saved model will serve
    if test_sets:
        metrics["tests"] = evaluate_tests(model, tokenizer, test_sets, max_length=serving_length,
                                          batch_size=args.eval_batch_size, dtype=dtype)
    resolved = {**as_json(args), "version": version, "models_dir": str(models_dir),
                "resolved_base_model": resolve_base_model(args.base_model), "casing": model.reads_casing,
                "total_steps": total_steps,
                "steps_per_epoch": steps_per_epoch, "torch": torch.__version__, "data_summary": summary}
    onnx_record: dict[str, Any] = {}

    def export_onnx(staging: Path) -> dict[str, Any]:
        try:
            onnx_record.update(export_serving(model, tokenizer, staging, valid_examples, max_length=args.max_length,
                                              batch_size=args.eval_batch_size))
        except Exception as error:  # an export problem must never cost the trained model
            log.exception("ONNX export of %s failed; the version is saved without it (torch serves it, and an "
                          "ONNX load exports fp32 then)", version)
            onnx_record.update({"error": f"{type(error).__name__}: {str(error)[:300]}", "validation": None,
                                "int8_gate": {"passed": False, "reason": "ONNX export failed at training",
                                              "drops": {}, "max_drop": None}})
            return onnx_record
        if test_sets:  # save_version writes metrics.json after this hook, so these numbers go in too
            add_onnx_tests(metrics["tests"], staging, onnx_record, tokenizer, test_sets, max_length=serving_length,
                           batch_size=args.eval_batch_size, threads=args.threads or 1)
        return onnx_record

    path = save_version(model, tokenizer, models_dir, version, base_model=args.base_model,
                        max_length=args.max_length, train_args=resolved, metrics=metrics, data_summary=summary,
                        prepare=export_onnx if args.onnx else None, extras={"peft": lora.save} if lora else None)
    if onnx_record:
        metrics["onnx"] = {"validation": onnx_record["validation"], "int8_gate": onnx_record["int8_gate"]}
    return TrainResult(version, path, metrics, resolved)
