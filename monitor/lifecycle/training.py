"""``finpulse train`` as the product runs it: check the registry first, fine-tune (:func:`finetune.train.train`),
then register the saved version (champion when ``--promote`` or when there is none yet).

The registry check comes before training, so a wrong or unmigrated database fails in a second, not after an
hour of training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from finetune import preset
from finetune.args import TrainArgs
from finetune.preset import PresetOptions
from finetune.train import TrainResult, train
from monitor.core import db
from monitor.core.settings import get_settings
from monitor.lifecycle import registry

log = logging.getLogger(__name__)


def registry_url(args: TrainArgs) -> str | None:
    """The database to register in, or None; checked before training so a bad database fails fast."""
    url = args.database_url or get_settings().database_url
    if not args.register or url.lower() == "none":
        return None
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).exists()):
        log.info("no database at %s: the model is saved but not registered (`finpulse db upgrade` creates one)",
                 url)
        return None
    engine = db.make_engine(url)
    try:
        db.require_migrated(engine)
    finally:
        engine.dispose()
    return url


def train_and_register(args: TrainArgs) -> TrainResult:
    """Train, save and (unless ``--no-register`` or no database) register; ``result.status`` is the registry's."""
    url = registry_url(args)
    return _register(url, args, train(args))


def train_preset_and_register(options: PresetOptions, echo: Callable[[str], None]) -> TrainResult:
    """``finpulse train --preset``: every check first (data directory, mpnet, registry), then teacher and student
    (:mod:`finetune.preset`); only the student is registered, and promoted."""
    stages = preset.plan(options)
    url = registry_url(stages.student)
    return _register(url, stages.student, preset.run(stages, echo))


def _register(url: str | None, args: TrainArgs, result: TrainResult) -> TrainResult:
    if url is not None:
        row = registry.register(url, version=result.version, path=str(result.path.resolve()),
                                base_model=args.base_model,
                                metrics={k: v for k, v in result.metrics.items() if k != "history"},
                                train_args=result.train_args, promote=args.promote,
                                parent_version=args.parent_version)
        result.status = row.status
    return result
