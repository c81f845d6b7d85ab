"""Which model serves the next batch.

The consumer asks its :class:`ScorerSource` for the current scorer *between* batches, never during one, so a
batch is always scored by one model version. :class:`ModelSource` serves ``FINPULSE_MODEL_DIR`` when set, else
the registry's champion and then follows it: a newly promoted champion is loaded in the background and
swapped in between two batches (:mod:`monitor.scoring.hot_swap`); the consumer needs no change for it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine

from monitor.core.errors import ConfigError
from monitor.core.settings import Settings
from monitor.scoring.champion import champion, model_path
from monitor.scoring.hot_swap import ChampionWatcher
from monitor.scoring.scorer import Scorer, load_scorer

log = logging.getLogger(__name__)

NO_MODEL = "no model to serve: train one with `finpulse train` or set FINPULSE_MODEL_DIR"


class ScorerSource(Protocol):
    def current(self) -> Scorer:
        """The scorer for the next batch."""
        ...


def resolve_model_dir(settings: Settings, engine: Engine) -> Path:
    """``settings.model_dir`` if set, else the champion's path; :class:`ConfigError` when there is neither."""
    if settings.model_dir is not None:
        return settings.model_dir
    row = champion(engine)
    if row is None:
        raise ConfigError(NO_MODEL)
    path = model_path(row, settings)
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
        return load_scorer(model_dir, device=s.device, precision=s.precision, backend=s.backend,
                           batch_size=s.score_batch_size, max_length=s.max_seq_length)

    def current(self) -> Scorer:
        if self._scorer is None:
            self._scorer = self.load(resolve_model_dir(self.settings, self.engine))
            if self.settings.model_dir is None:  # serving the registry's champion: follow it (hot swap)
                self._watcher = ChampionWatcher(self.settings, self.engine, self._scorer, self.load)
        elif self._watcher is not None:
            self._scorer = self._watcher.next_scorer(self._scorer)
        return self._scorer
