"""Which model serves the next batch.

The consumer asks its :class:`ScorerSource` for the current scorer *between* batches, never during one, so a
batch is always scored by one model version. :class:`ModelSource` serves ``FINPULSE_MODEL_DIR`` when set, else
the registry's champion and then follows it: a newly promoted champion is loaded in the background and
swapped in between two batches (:mod:`monitor.model_watch`); the consumer needs no change for it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.errors import ConfigError
from monitor.model_watch import ChampionWatcher
from monitor.scorer import Scorer, load_scorer
from monitor.settings import Settings
from schemas.registry import ModelVersion

log = logging.getLogger(__name__)

NO_MODEL = "no model to serve: train one with `finpulse train` or set FINPULSE_MODEL_DIR"


class ScorerSource(Protocol):
    def current(self) -> Scorer:
        """The scorer for the next batch."""
        ...


def champion(engine: Engine) -> ModelVersion | None:
    """The registry's champion row (the newest promoted one, should there ever be two)."""
    with Session(engine) as session:
        query = (select(ModelVersion).where(ModelVersion.status == "champion")
                 .order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc()))
        return session.exec(query).first()


def resolve_model_dir(settings: Settings, engine: Engine) -> Path:
    """``settings.model_dir`` if set, else the champion's path; :class:`ConfigError` when there is neither."""
    if settings.model_dir is not None:
        return settings.model_dir
    row = champion(engine)
    if row is None:
        raise ConfigError(NO_MODEL)
    path = Path(row.path)
    if not path.is_absolute() and not path.exists():
        path = settings.models_dir / path  # registry rows may store paths relative to FINPULSE_MODELS_DIR
    log.info("serving the registry's champion %s from %s", row.version, path)
    return path


class ModelSource:
    """Serves one scorer, loaded on first use from :func:`resolve_model_dir`."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._scorer: Scorer | None = None
        self._watcher: ChampionWatcher | None = None

    def load(self, model_dir: Path) -> Scorer:
        s = self.settings
        return load_scorer(model_dir, device=s.device, precision=s.precision, batch_size=s.score_batch_size,
                           max_length=s.max_seq_length)

    def current(self) -> Scorer:
        if self._scorer is None:
            self._scorer = self.load(resolve_model_dir(self.settings, self.engine))
            if self.settings.model_dir is None:  # serving the registry's champion: follow it (hot swap)
                self._watcher = ChampionWatcher(self.settings, self.engine, self._scorer, self.load)
        elif self._watcher is not None:
            self._scorer = self._watcher.next_scorer(self._scorer)
        return self._scorer
