"""LoRA fine-tuning of the multi-task model with the ``peft`` library (``finpulse train --peft lora``).

Low-rank adapters go into the encoder's linear layers (by default every linear layer of its transformer blocks:
attention query/key/value/output and the two FFN dense layers); the rest of the encoder is frozen, and the three
task heads stay fully trained (peft's ``modules_to_save``). peft injects its layers into the model in place, so the
training loop keeps calling a :class:`MultitaskModel`.

At save the adapters are merged into the weights: ``model.safetensors`` has the usual layout, so serving, the ONNX
export and every loader stay as they are. The adapter itself (LoRA matrices plus the trained heads, a few MB) is
saved too, in peft's format under ``adapter/`` (``adapter_model.safetensors`` + ``adapter_config.json``): applied
to the parent model with ``PeftModel.from_pretrained`` it gives the version's predictions, so a retraining
version costs a few MB to keep. It lives in a subfolder because transformers treats a folder holding
``adapter_config.json`` as an adapter and would load the base model it names instead of the merged weights.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file

from finetune.args import TrainArgs
from finetune.model import MultitaskModel
from finetune.model_dir import ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS
from monitor.core.errors import ConfigError

log = logging.getLogger(__name__)

HEADS = ("sentiment_head", "ner_head", "entity_head")
_BLOCK = re.compile(r"\.layer\.\d+\.")  # a transformer block's modules: encoder.layer.<i>.<...> (BERT, MPNet, ...)
_PREFIX = "base_model.model."  # how peft names the wrapped model's weights in an adapter file


def default_targets(model: MultitaskModel) -> list[str]:
    """Names, relative to a transformer block, of the block's linear layers: for BERT/MiniLM
    ``attention.self.query/key/value``, ``attention.output.dense``, ``intermediate.dense``, ``output.dense``. The
    pooler and the heads are never adapted (the pooler is unused; the heads are trained in full)."""
    found: list[str] = []
    for name, module in model.encoder.named_modules():
        match = _BLOCK.search(f".{name}")
        if isinstance(module, torch.nn.Linear) and match:
            suffix = f".{name}"[match.end():]
            if suffix not in found:
                found.append(suffix)
    if not found:
        raise ConfigError(f"no linear layers in the transformer blocks of {type(model.encoder).__name__}; pass "
                          "--lora-targets with its module names")
    return found


def targets_of(model: MultitaskModel, args: TrainArgs) -> list[str]:
    if args.lora_targets:
        return [name.strip() for name in args.lora_targets.split(",") if name.strip()]
    return default_targets(model)


class LoraTraining:
    """LoRA adapters injected into ``model`` (in place) for one training run; :meth:`merge` folds them back in."""

    def __init__(self, model: MultitaskModel, args: TrainArgs) -> None:
        self.args = args
        self.model = model
        self.targets = targets_of(model, args)
        self.config = LoraConfig(r=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                 target_modules=self.targets, modules_to_save=list(HEADS), bias="none")
        try:
            self.peft: PeftModel | None = get_peft_model(model, self.config)
        except ValueError as error:  # e.g. a --lora-targets name that matches no layer
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"--lora-targets {','.join(self.targets)}: {first}; name linear layers of the "
                              "encoder (e.g. query,key,value)") from None
        # where the adapter applies (informational in adapter_config.json); set after get_peft_model, which warns
        # when it differs from the model's own name_or_path (a MultitaskModel has none)
        self.config.base_model_name_or_path = args.init_model or args.base_model
        self.adapter: dict[str, torch.Tensor] = {}
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lora = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and ".lora_" in n)
        # get_peft_model also counts the frozen copies of the heads that modules_to_save keeps
        total = sum(p.numel() for n, p in model.named_parameters()
                    if ".lora_" not in n and ".modules_to_save." not in n)
        self.counts = {"trainable_parameters": trainable, "lora_parameters": lora, "model_parameters": total}
        log.info("LoRA rank %d on %s: %d of %d parameters trainable (%d in adapters, the rest the heads)",
                 args.lora_rank, self.targets, trainable, total, lora)

    def optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the trainable weights: the adapter matrices at ``--lora-learning-rate`` (they start at zero
        and are low-rank, so they need larger steps than full fine-tuning), the heads at ``--learning-rate``;
        no weight decay on biases."""
        args = self.args
        adapter_lr = args.lora_learning_rate or 10 * args.learning_rate
        groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                lr = adapter_lr if ".lora_" in name else args.learning_rate
                decay = args.weight_decay if parameter.ndim >= 2 else 0.0
                groups.setdefault((lr, decay), []).append(parameter)
        return torch.optim.AdamW([{"params": params, "lr": lr, "weight_decay": decay}
                                  for (lr, decay), params in groups.items()], lr=args.learning_rate)

    def merge(self) -> MultitaskModel:
        """Keep the adapter's weights, then fold the adapters into the encoder's weights and put the trained heads
        back in place: the same :class:`MultitaskModel` object, with plain layers again."""
        if self.peft is None:
            raise RuntimeError("the LoRA adapters were merged already")
        # save_embedding_layers=False: the vocabulary is never resized or adapted here, and peft's "auto" would look
        # the base model up on the Hugging Face hub (a network call at run time)
        self.adapter = {k: v.detach().to("cpu", copy=True).contiguous()
                        for k, v in get_peft_model_state_dict(self.peft, save_embedding_layers=False).items()}
        merged: torch.nn.Module = self.peft.merge_and_unload()
        self.peft = None
        if merged is not self.model:  # peft unloads in place; anything else would leave train.py a stale model
            raise RuntimeError("peft returned a new model from merge_and_unload")
        return self.model

    def save(self, model_dir: Path) -> dict[str, Any]:
        """Write ``adapter/`` into ``model_dir``; return the manifest's ``peft`` record. The heads are taken from
        the merged model now, so what calibration folded into their biases is in the adapter too."""
        if not self.adapter:
            raise RuntimeError("merge() the adapters before saving them")
        for name, value in self.model.state_dict().items():
            if name.split(".", 1)[0] in HEADS:
                self.adapter[_PREFIX + name] = value.detach().to("cpu", copy=True).contiguous()
        folder = model_dir / ADAPTER_DIR
        folder.mkdir()
        weights = folder / ADAPTER_WEIGHTS
        save_file(self.adapter, str(weights), metadata={"format": "pt"})
        self.config.save_pretrained(str(folder))
        for path in (weights, folder / ADAPTER_CONFIG):
            path.chmod(0o644)  # safetensors writes owner-only files; servers may run as another user
        size = weights.stat().st_size
        args = self.args
        return {"method": "lora", "rank": args.lora_rank, "alpha": args.lora_alpha, "dropout": args.lora_dropout,
                "targets": self.targets, "heads": "trained in full (peft modules_to_save, stored in the adapter)",
                "adapter_file": f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}", "adapter_bytes": size,
                "adapter_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                "base_model": args.base_model, "parent_version": args.parent_version, "parent_path": args.init_model,
                **self.counts}


def apply_adapter(parent: MultitaskModel, model_dir: Path) -> PeftModel:
    """The saved adapter of version ``model_dir`` on its parent model (peft's own loader, for checks and for
    rebuilding a version from its parent)."""
    return PeftModel.from_pretrained(parent, str(Path(model_dir) / ADAPTER_DIR), is_trainable=False)
