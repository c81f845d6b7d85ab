"""One retraining run (``finpulse retrain`` and the scheduler's job).

1. Take the ``retrain`` database lock (one retraining at a time across processes and machines).
2. Assign new labels to gold/train (:mod:`monitor.lifecycle.retrain_data`); skip, with the reason logged and recorded in
   ``job_run``, when fewer than ``retrain_min_labels`` labels arrived since the champion was trained.
3. Fine-tune starting from the champion's weights (``--init-model``) on the new ``train`` labels plus a replay
   sample; gold texts are excluded from training.
4. Test-load the candidate as every promotion does (:mod:`monitor.lifecycle.model_check`: loads as served, finite
   probabilities); one that fails ends the run as ``failed`` with the reason, unregistered.
5. Evaluate champion and candidate as served on the gold set and on the new labels' gold part; decide
   (:mod:`monitor.lifecycle.gate`); register the candidate with its metrics and gate, audited as the
   ``scheduler`` principal. With ``FINPULSE_RETRAIN_PROMOTION=auto`` a candidate that passes becomes champion;
   with ``approve`` it is registered ``awaiting_approval`` (run status ``awaiting``), the champion keeps serving,
   and an admin other than its last labeller approves it (:func:`monitor.lifecycle.registry.approve`).

A champion that a consumer refused (``refused_at``) is not retrained from: the run is skipped with the reason.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from finetune.args import TrainArgs, load_config, parse_args
from finetune.device import training_precision
from finetune.examples import Example
from finetune.model_dir import check_multitask_dir
from finetune.train import TrainResult, train
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.core.db_lock import DbLock
from monitor.core.errors import FinpulseError, ModelLoadError
from monitor.core.settings import Settings
from monitor.lifecycle import job_runs, registry
from monitor.lifecycle.drift import check_drift, store_reference
from monitor.lifecycle.gate import decide
from monitor.lifecycle.model_check import check_model
from monitor.lifecycle.retrain_data import GOLD, TRAIN, assign_splits, load_labels, replay_sample, write_finpulse
from monitor.lifecycle.retrain_eval import evaluate_served, load_served, reference_distribution
from monitor.scoring.champion import champion as current_champion
from monitor.scoring.champion import model_path, refusal_text
from schemas.registry import ModelVersion

log = logging.getLogger(__name__)

LOCK_NAME = "retrain"
SCHEDULER = Principal("scheduler", "admin", "scheduler")  # who registers (and, in auto mode, promotes) candidates


@dataclass
class RetrainOutcome:
    status: str  # promoted | awaiting | rejected | skipped | busy | failed
    reason: str
    version: str | None = None
    gate: dict[str, Any] | None = None
    run_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def retrain(settings: Settings, *, engine: Engine | None = None, trigger: str = "cli", slot: str | None = None,
            wait: bool = True, config: Path | None = None, version: str | None = None) -> RetrainOutcome:
    """Run one retraining under the lock and record it in ``job_run``. ``slot`` (scheduled runs) makes it
    once-only: a slot that another scheduler already ran is skipped."""
    owned = engine is None
    engine = engine or db.make_engine(settings.database_url)
    try:
        db.require_migrated(engine)
        lock = DbLock(engine, LOCK_NAME)
        if not lock.acquire(wait=wait):
            held = lock.holder()
            reason = f"another retraining is running ({held[0] if held else 'unknown holder'})"
            log.info("retraining not started: %s", reason)
            return RetrainOutcome("busy", reason)
        try:
            if slot is not None and (done := job_runs.slot_owner(engine, "retrain", slot)) is not None:
                reason = f"scheduled run {slot} was already handled by {done.owner} ({done.status})"
                log.info("retraining skipped: %s", reason)
                return RetrainOutcome("skipped", reason, run_id=done.id)
            run = job_runs.start(engine, "retrain", trigger=trigger, slot=slot)
            if run is None:
                return RetrainOutcome("skipped", f"scheduled run {slot} was claimed by another process")
            try:
                outcome = _run(settings, engine, config or settings.retrain_config, version)
            except Exception as error:
                job_runs.finish(engine, run, "failed", f"{type(error).__name__}: {error}")
                raise
            outcome.run_id = run.id
            job_runs.finish(engine, run, outcome.status, outcome.reason,
                            {"version": outcome.version, "gate": outcome.gate, **outcome.details})
            return outcome
        finally:
            lock.release()
    finally:
        if owned:
            engine.dispose()


def _run(settings: Settings, engine: Engine, config: Path | None, version: str | None) -> RetrainOutcome:
    champion = current_champion(engine)
    if champion is None:
        reason = "no champion model to retrain from; train one with `finpulse train`"
        log.info("retraining skipped: %s", reason)
        return RetrainOutcome("skipped", reason)
    assign_splits(engine, settings.retrain_gold_fraction)
    since = champion.trained_until_label_id or 0
    new = load_labels(engine, after_id=since)
    if champion.refused_at is not None:
        reason = (f"champion {refusal_text(champion)}; promote a working version (or fix and re-promote it) "
                  "before retraining from it")
        log.info("retraining skipped: %s", reason)
        return RetrainOutcome("skipped", reason)
    if len(new) < settings.retrain_min_labels:
        reason = (f"{len(new)} new labels since {champion.version} (labelled_news.id > {since}), fewer than "
                  f"FINPULSE_RETRAIN_MIN_LABELS={settings.retrain_min_labels}")
        log.info("retraining skipped: %s", reason)
        return RetrainOutcome("skipped", reason, details={"new_labels": len(new)})
    try:  # every retraining records drift too; a failure there must not stop the retraining
        check_drift(settings, engine, trigger="retrain")
    except Exception:
        log.exception("drift check during retraining failed")
    upto = max(item.id for item in new)
    new_train = [item.example for item in new if item.split == TRAIN]
    new_gold = [item.example for item in new if item.split == GOLD]
    gold = [item.example for item in load_labels(engine, split=GOLD)]
    replay = replay_sample(engine, since, settings.retrain_replay_samples, seed=upto, exclude=gold)
    if not new_train:
        return RetrainOutcome("skipped", f"all {len(new)} new labels fell into the gold set; nothing to train on")
    champion_dir = model_path(champion, settings)
    champion_scorer = load_served(champion_dir, settings)  # fails fast, before training, if it cannot load
    labels = {"new": len(new), "new_train": len(new_train), "new_gold": len(new_gold), "gold": len(gold),
              "replay": len(replay), "from_id": since + 1, "to_id": upto}
    log.info("retraining %s on %d new labels (+%d replayed), evaluating on %d gold (%d of them new)",
             champion.version, len(new_train), len(replay), len(gold), len(new_gold))
    result = _train(settings, champion, champion_dir, new_train + replay, gold, config, version)
    try:  # the test-load of every promotion: a candidate that cannot serve is neither registered nor promoted
        candidate = check_model(result.path, settings, result.version, "register")
    except ModelLoadError as error:
        log.error("retraining failed: %s", error)
        return RetrainOutcome("failed", str(error), version=result.version, details={"labels": labels})
    champ_gold, champ_new = evaluate_served(champion_scorer, gold), evaluate_served(champion_scorer, new_gold)
    cand_gold, cand_new = evaluate_served(candidate, gold), evaluate_served(candidate, new_gold)
    gate = decide(gold_candidate=cand_gold["macro_f1"], gold_champion=champ_gold["macro_f1"], gold_n=cand_gold["n"],
                  new_candidate=cand_new["macro_f1"], new_champion=champ_new["macro_f1"], new_n=cand_new["n"],
                  tolerance=settings.retrain_tolerance, min_improvement=settings.retrain_min_improvement,
                  champion_version=champion.version,
                  extra={"labels": labels, "champion_metrics": {"gold": _brief(champ_gold), "new_labels":
                                                                _brief(champ_new)}})
    if "reference_distribution" not in (champion.metrics or {}):
        reference = reference_distribution(champ_gold, "gold")
        if reference is not None:
            store_reference(engine, champion.version, reference)
    metrics = {**{k: v for k, v in result.metrics.items() if k != "history"},
               "gold": _brief(cand_gold), "new_labels": _brief(cand_new)}
    reference = reference_distribution(cand_gold, "gold")
    if reference is not None:
        metrics["reference_distribution"] = reference
    row = _register(engine, result, champion, metrics, gate, upto, settings.retrain_promotion == "approve")
    status = "awaiting" if row.awaiting_approval else gate["decision"]
    log.info("candidate %s %s: %s", row.version, "passed the gate and awaits an admin's approval"
             if row.awaiting_approval else gate["decision"], gate["reason"])
    return RetrainOutcome(status, gate["reason"], version=row.version, gate=gate,
                          details={"labels": labels, "status": row.status,
                                   "awaiting_approval": row.awaiting_approval})


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "distribution"}


def _train(settings: Settings, champion: ModelVersion, champion_dir: Path, examples: list[Example],
           gold: list[Example], config: Path | None, version: str | None) -> TrainResult:
    with tempfile.TemporaryDirectory(prefix="finpulse-retrain-") as folder:
        train_file = write_finpulse(Path(folder) / "train.jsonl", examples)
        argv = ["--data", f"finpulse={train_file}", "--models-dir", str(settings.models_dir),
                "--database-url", "none", "--no-register", "--no-progress", "--parent-version", champion.version]
        if gold:  # the trainer also drops near-duplicates of gold texts
            argv += ["--exclude-data", f"finpulse={write_finpulse(Path(folder) / 'gold.jsonl', gold)}"]
        try:
            check_multitask_dir(champion_dir)
            argv += ["--init-model", str(champion_dir), "--base-model", champion.base_model]
        except ModelLoadError:  # not a finpulse multi-task model: start from its encoder, with fresh heads
            log.info("champion %s is not a multi-task model; fine-tuning its encoder with new heads", champion.version)
            argv += ["--base-model", str(champion_dir)]
        chosen = load_config(config, TrainArgs) if config is not None else {}
        # the serving device and precision (int8 serves only) unless the retraining config says otherwise
        if "device" not in chosen:
            argv += ["--device", settings.device]
        if "precision" not in chosen:
            argv += ["--precision", training_precision(settings.precision)]
        if "peft" not in chosen:  # FINPULSE_RETRAIN_PEFT: LoRA adapters on the champion, or every weight
            argv += ["--peft", settings.retrain_peft]
        if version:
            argv += ["--version", version]
        args = parse_args(TrainArgs, (["--config", str(config)] if config is not None else []) + argv,
                          prog="finpulse retrain")
        return train(args)


def _register(engine: Engine, result: TrainResult, champion: ModelVersion, metrics: dict[str, Any],
              gate: dict[str, Any], upto: int, four_eyes: bool) -> ModelVersion:
    train_args = _saved_args(result.path)  # what the trainer resolved (training_args.json)
    passed = gate["decision"] == "promoted"
    return registry.register(engine, version=result.version, path=str(Path(result.path).resolve()),
                             base_model=champion.base_model, metrics=metrics, train_args=train_args,
                             promote=passed and not four_eyes, parent_version=champion.version,
                             trained_until_label_id=upto, gate=gate, awaiting_approval=passed and four_eyes,
                             by=SCHEDULER)


def _saved_args(path: Path) -> dict[str, Any]:
    import json

    file = Path(path) / "training_args.json"
    try:
        return dict(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise FinpulseError(f"{file}: could not read the training arguments ({error})") from None
