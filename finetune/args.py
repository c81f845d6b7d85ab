"""Arguments of ``finpulse train`` / ``finpulse eval`` as dataclasses with help text (transformers-examples style).

The command line is generated from the fields. ``--config FILE`` (YAML or JSON, keys = field names) supplies values
that command-line flags then override, so a shipped config is a reproducible recipe.
"""

from __future__ import annotations

import argparse
import json
import logging
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from finetune.data.sources import DataSpec
from finetune.data.testsets import parse_named_specs
from monitor.core.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T", bound="DataArgs")
_DATA_HELP = ("Data source KIND=PATH[?opt=value&...], repeatable. Kinds: csv, jsonl (text + label columns), tfns, "
              "conll, finpulse, sentfin (options part=all|train|heldout, heldout=0.2, seed=0), db (a database URL "
              "or 'default'), text (unlabelled; options column, max_rows, seed, lang; needs --teacher). "
              "Tasks a source lacks are masked out of the loss.")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DataArgs:
    data: list[str] = field(default_factory=list, metadata=_help(_DATA_HELP))
    text_column: str = field(default="text", metadata=_help("Text column (csv) or key (jsonl) of csv/jsonl sources."))
    label_column: str = field(default="label", metadata=_help("Label column/key of csv/jsonl sources."))
    label_map: str | None = field(default=None, metadata=_help(
        "Raw label -> sentiment for csv/jsonl sources, e.g. 0=negative,1=positive,2=neutral "
        "(default: label names such as negative/neutral/positive, bearish/bullish)."))
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=_help(
        "auto (CUDA when available), cpu or cuda."))
    precision: Literal["auto", "bf16", "fp32"] = field(default="auto", metadata=_help(
        "auto = bf16 on CUDA and on CPUs with native bf16 (AMX/AVX512-BF16), fp32 elsewhere."))
    eval_batch_size: int = field(default=64, metadata=_help("Texts per evaluation forward pass."))


@dataclass
class TrainArgs(DataArgs):
    """Fine-tune finpulse's multi-task model (document sentiment, NER, entity sentiment) and save a version.
    `finpulse train --preset finance` trains the recommended teacher + student recipe instead (see its --help)."""

    validation_data: list[str] = field(default_factory=list, metadata=_help(
        "Validation sources (same syntax as --data) for early stopping and metrics.json; "
        "default: --validation-split of the training data."))
    validation_split: float = field(default=0.1, metadata=_help(
        "Fraction of the training data held out for validation when no --validation-data is given "
        "(near-duplicate texts stay on one side)."))
    exclude_data: list[str] = field(default_factory=list, metadata=_help(
        "Sources whose texts must never be trained on (e.g. the test set you report on); near-duplicates of "
        "their texts are removed from the training data."))
    test_data: list[str] = field(default_factory=list, metadata=_help(
        "Named test sets NAME=KIND=PATH[?opt=value&...] (e.g. tfns_valid=tfns=FILE), repeatable: excluded from "
        "training like --exclude-data, scored with the saved model after training; metrics.json `tests`."))
    base_model: str = field(default="all-MiniLM-L6-v2", metadata=_help(
        "Encoder to fine-tune: the packaged default, a local directory or a Hugging Face id (safetensors only)."))
    init_model: str | None = field(default=None, metadata=_help(
        "Continue from this finpulse model directory (encoder and all three heads) instead of fresh heads on "
        "--base-model, which is then only recorded; `finpulse retrain` starts from the champion this way."))
    models_dir: str | None = field(default=None, metadata=_help(
        "Where the version directory is written (default FINPULSE_MODELS_DIR)."))
    version: str | None = field(default=None, metadata=_help("Version name (default vYYYYMMDD-HHMMSS, UTC)."))
    epochs: float = field(default=3.0, metadata=_help("Training epochs (fractions allowed)."))
    max_steps: int | None = field(default=None, metadata=_help(
        "Stop after this many optimizer steps (overrides --epochs)."))
    max_train_samples: int | None = field(default=None, metadata=_help(
        "Use at most this many training examples (seeded sample)."))
    max_eval_samples: int | None = field(default=None, metadata=_help(
        "Use at most this many validation examples (seeded sample)."))
    batch_size: int = field(default=32, metadata=_help("Training batch size."))
    learning_rate: float = field(default=5e-5, metadata=_help(
        "Peak AdamW learning rate (linear warm-up, then linear decay)."))
    weight_decay: float = field(default=0.01, metadata=_help(
        "AdamW weight decay (not applied to biases and LayerNorm)."))
    warmup_ratio: float = field(default=0.06, metadata=_help("Fraction of the steps spent warming up."))
    max_length: int = field(default=64, metadata=_help("Tokens per text during training and validation."))
    freeze_embeddings: bool = field(default=False, metadata=_help(
        "Keep the word-embedding matrix fixed (about half of MiniLM's weights): faster steps on CPU."))
    casing: bool = field(default=True, metadata=_help(
        "Feed each token's casing class (lower, Title, ALL CAPS, ...) to the encoder, which lowercases its input "
        "(finetune/casing.py; FiNER-ORD entity F1 in the README). Continued training (--init-model) keeps the "
        "initial model's choice."))
    peft: Literal["none", "lora"] = field(default="none", metadata=_help(
        "Parameter-efficient fine-tuning: lora trains low-rank adapters (peft library) on the encoder, which is "
        "otherwise frozen, and the three heads in full; at save the adapters are merged into model.safetensors "
        "(serving unchanged) and also kept under adapter/ (a few MB). none trains every weight."))
    lora_rank: int = field(default=8, metadata=_help("With --peft lora: rank r of each adapter (>= 1)."))
    lora_alpha: int = field(default=16, metadata=_help(
        "With --peft lora: adapter scaling numerator; updates are scaled by alpha / rank."))
    lora_dropout: float = field(default=0.0, metadata=_help(
        "With --peft lora: dropout on the adapters' input, in [0, 1). 0 by default: with dropout peft copies "
        "each adapted layer's input, which made steps 1.3x slower and used more memory for the same quality "
        "(README, LoRA)."))
    lora_targets: str | None = field(default=None, metadata=_help(
        "With --peft lora: comma-separated names (suffixes) of the encoder layers to adapt (default: every linear "
        "layer of its transformer blocks, i.e. attention query/key/value/output and the FFN dense layers)."))
    lora_learning_rate: float | None = field(default=None, metadata=_help(
        "With --peft lora: peak learning rate of the adapter matrices (default: 10 x --learning-rate; they start "
        "at zero and are low-rank); the heads train at --learning-rate."))
    sentiment_weight: float = field(default=1.0, metadata=_help("Loss weight of the document-sentiment head."))
    ner_weight: float = field(default=1.0, metadata=_help("Loss weight of the NER head."))
    entity_weight: float = field(default=1.0, metadata=_help("Loss weight of the entity-sentiment head."))
    teacher: str | None = field(default=None, metadata=_help(
        "Knowledge distillation: a `finpulse train` output directory (e.g. an all-mpnet-base-v2 model) whose soft "
        "targets for all three heads the student learns from, computed once before training; it may use another "
        "tokenizer (targets are aligned by words and character spans). Enables unlabelled text= sources."))
    distill_alpha: float = field(default=0.5, metadata=_help(
        "With --teacher: per head, loss = alpha * hard-label loss (where labels exist) + (1 - alpha) * T^2 * "
        "KL(teacher_T || student_T); 1 ignores the teacher, 0 learns from the teacher only."))
    distill_temperature: float = field(default=2.0, metadata=_help(
        "With --teacher: softmax temperature T of both teacher and student in the distillation term (higher "
        "exposes more of the teacher's ranking of the wrong classes)."))
    seed: int = field(default=42, metadata=_help(
        "Random seed (data order, head initialisation, dropout, validation split)."))
    eval_steps: int | None = field(default=None, metadata=_help("Validate every N steps (default: once per epoch)."))
    patience: int = field(default=2, metadata=_help(
        "Stop after this many validations without improvement (0 = never stop early)."))
    selection_metric: Literal["mean", "sentiment_macro_f1", "ner_f1", "entity_macro_f1"] = field(
        default="mean", metadata=_help(
            "Validation score for early stopping and the best checkpoint: one task's macro-F1 (entity F1 for NER) "
            "or the mean over the tasks the validation data labels."))
    calibrate: bool = field(default=True, metadata=_help(
        "After training, fit per-class logit offsets of the two sentiment heads on the validation data to maximise "
        "macro-F1 (class-prior correction, folded into the heads' biases); kept only if it helps."))
    onnx: bool = field(default=True, metadata=_help(
        "Also export the model to ONNX (model.onnx) for ONNX Runtime serving, and an int8 version when it loses at "
        "most 0.005 of any validation metric (the int8 gate; both sets of numbers go into metrics.json)."))
    threads: int | None = field(default=None, metadata=_help("torch CPU threads (default: torch's choice)."))
    database_url: str | None = field(default=None, metadata=_help(
        "Registry database (default FINPULSE_DATABASE_URL); 'none' skips registration."))
    register: bool = field(default=True, metadata=_help(
        "Record the version in the model_version table when the database exists."))
    promote: bool = field(default=False, metadata=_help(
        "Make the new version champion. Without it, it becomes champion only when there is no champion yet; "
        "otherwise it stays a candidate."))
    parent_version: str | None = field(default=None, metadata=_help(
        "Version this one was trained from (recorded in the registry)."))
    progress: bool = field(default=True, metadata=_help("Show a progress bar with loss and ETA."))


@dataclass
class EvalArgs(DataArgs):
    """Evaluate a finpulse model directory on labelled data; prints JSON metrics."""

    model: str = field(default="", metadata=_help("Model directory to evaluate (a `finpulse train` output)."))
    out: str | None = field(default=None, metadata=_help("Also write the JSON report to this file."))
    max_length: int | None = field(default=None, metadata=_help(
        "Tokens per text (default FINPULSE_MAX_SEQ_LENGTH, as when serving)."))
    max_eval_samples: int | None = field(default=None, metadata=_help(
        "Evaluate at most this many examples (seeded sample)."))
    backend: str = field(default="torch", metadata=_help(
        "torch, or onnx: evaluate the ONNX export (fp32, and int8 when the model has a gated one) and print its "
        "metrics beside torch fp32's (on the CPU; --device and --precision then apply to neither)."))


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X | None``."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return inner[0], True
    return hint, False


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors (a bad choice such as ``--peft qlora``, a non-number) are one-line
    ConfigErrors, which the CLI prints as ``error: ...`` with exit status 2, instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see `{self.prog} --help`")


def build_parser(cls: type[DataArgs], prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=(cls.__doc__ or "").strip() or None,
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML or JSON file of these options (keys use underscores); "
                                         "command-line flags override it.")
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        hint, _ = _base_type(hints[f.name])
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {default})"
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(hint) is list:
            parser.add_argument(flag, action="append", metavar="SPEC", help=help_text)
        elif typing.get_origin(hint) is Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), help=help_text)
        else:
            parser.add_argument(flag, type=hint, metavar=f.name.upper(), help=help_text)
    return parser


def load_config(path: Path, cls: type[DataArgs]) -> dict[str, Any]:
    """Field values from a YAML/JSON file; unknown keys and wrong types are ConfigErrors naming the file."""
    if not path.is_file():
        raise ConfigError(f"--config {path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (json.JSONDecodeError, ValueError) as error:
        raise ConfigError(f"--config {path}: not valid {path.suffix or 'YAML'} ({error})".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"--config {path}: unknown option(s) {unknown}; see `--help` for the names")
    return {key: _coerce(cls, key, value, path) for key, value in data.items()}


def _coerce(cls: type[DataArgs], key: str, value: Any, path: Path) -> Any:
    hint, optional = _base_type(typing.get_type_hints(cls)[key])
    if value is None and optional:
        return None
    try:
        if typing.get_origin(hint) is list:
            items = value if isinstance(value, list) else [value]
            return [item if isinstance(item, str) else str(DataSpec.parse(item)) for item in items]
        if hint is bool:
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            raise ValueError(f"expected one of {', '.join(map(str, typing.get_args(hint)))}")
        if hint in (int, float, str):
            return hint(value)  # YAML reads 5e-5 as a string; int("3") and float("5e-5") fix that
        return value
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--config {path}: option {key}={value!r}: {error}") from None


def parse_args(cls: type[T], argv: Sequence[str], prog: str) -> T:
    """Defaults < ``--config`` file < command-line flags."""
    namespace = vars(build_parser(cls, prog).parse_args(list(argv)))
    values: dict[str, Any] = {}
    config = namespace.pop("config", None)
    if config:
        values.update(load_config(Path(config), cls))
    values.update(namespace)
    args = cls(**values)
    _validate(args)
    return args


def _validate(args: DataArgs) -> None:
    if not args.data:
        raise ConfigError("no data: pass --data KIND=PATH (repeatable) or a --config file with a 'data' list")
    if isinstance(args, EvalArgs) and not args.model:
        raise ConfigError("no model: pass --model DIR (a `finpulse train` output directory)")
    if isinstance(args, TrainArgs):
        checks = [(args.batch_size >= 1, "--batch-size must be >= 1"), (args.epochs > 0, "--epochs must be > 0"),
                  (0 <= args.validation_split < 1, "--validation-split must be in [0, 1)"),
                  (args.max_length >= 8, "--max-length must be >= 8"), (args.learning_rate > 0, "--learning-rate > 0"),
                  (args.max_steps is None or args.max_steps >= 1, "--max-steps must be >= 1"),
                  (args.patience >= 0, "--patience must be >= 0"),
                  (0 <= args.distill_alpha <= 1, "--distill-alpha must be in [0, 1]"),
                  (args.distill_temperature > 0, "--distill-temperature must be > 0")]
        checks += [(args.lora_rank >= 1, "--lora-rank must be >= 1"), (args.lora_alpha > 0, "--lora-alpha must be > 0"),
                   (0 <= args.lora_dropout < 1, "--lora-dropout must be in [0, 1)"),
                   (args.lora_learning_rate is None or args.lora_learning_rate > 0, "--lora-learning-rate > 0")]
        parse_named_specs(args.test_data)  # a malformed NAME=KIND=PATH fails before any data is read
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message}; fix the flag or the --config file")


def as_json(args: DataArgs) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()}
