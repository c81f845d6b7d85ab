"""Which model serves the next batch.

The consumer asks its :class:`ScorerSource` for the current scorer *between* batches, never during one, so a
batch is always scored by one model version. :class:`ModelSource` serves ``FINPULSE_MODEL_DIR`` when set, else
the registry's champion and then follows it: a newly promoted champion is loaded in the background and
swapped in between two batches (:mod:`monitor.scoring.hot_swap`); the consumer needs no change for it.

A champion that is refused (``model_version.refused_at`` set by another consumer) or that fails to load here is
not served: the refusal is recorded in the registry and the consumer serves the *last good* version, the most
recently promoted one that is not refused and loads (:func:`serve_last_good`), with one WARNING line saying
which and why. Only when no version loads does start-up fail, with one line. Every model is loaded through
:func:`load_checked`, the same test-load that promotion runs (:mod:`monitor.lifecycle.model_check`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine

from finetune.device import resolve_device
from monitor.core.errors import ConfigError, ModelLoadError
from monitor.core.settings import Settings
from monitor.scoring.backends import check_choice
from monitor.scoring.champion import champion, earlier_champions, model_path, one_line, record_refusal, refusal_text
from monitor.scoring.hot_swap import ChampionWatcher
from monitor.scoring.scorer import Scorer, load_scorer
from schemas.prediction import SENTIMENT_LABELS
from schemas.registry import ModelVersion

log = logging.getLogger(__name__)

NO_MODEL = "no model to serve: train one with `finpulse train` or set FINPULSE_MODEL_DIR"
SMOKE_TEXTS = ("Acme Corp shares jump 12% after quarterly revenue beats estimates",
               "Regulators fine Beta Bank over lending practices; $BETA falls")


class ScorerSource(Protocol):
    def current(self) -> Scorer:
        """The scorer for the next batch."""
        ...


def smoke_check(scorer: Scorer) -> None:
    """Score :data:`SMOKE_TEXTS`; :class:`ModelLoadError` unless each gets a known label and three finite
    probabilities in [0, 1] (corrupt weights load fine and then yield NaN)."""
    try:
        predictions = scorer.score(list(SMOKE_TEXTS))
    except Exception as error:  # noqa: BLE001 - whatever the engine raises, the model is not usable
        raise ModelLoadError(f"{scorer.model_dir}: scoring the smoke texts failed ({one_line(error, 200)})") from None
    if len(predictions) != len(SMOKE_TEXTS):
        raise ModelLoadError(f"{scorer.model_dir}: the smoke check got {len(predictions)} predictions for "
                             f"{len(SMOKE_TEXTS)} texts")
    for prediction in predictions:
        if prediction.sentiment not in SENTIMENT_LABELS or not all(
                math.isfinite(p) and -1e-6 <= p <= 1 + 1e-6 for p in prediction.probs):
            raise ModelLoadError(f"{scorer.model_dir}: the smoke check got probabilities {prediction.probs} "
                                 f"({prediction.sentiment}); expected three finite probabilities (corrupt weights?)")


def load_checked(model_dir: Path, settings: Settings) -> Scorer:
    """Load ``model_dir`` as the consumer serves it (device, precision, backend) and :func:`smoke_check` it."""
    s = settings
    scorer = load_scorer(model_dir, device=s.device, precision=s.precision, backend=s.backend,
                         batch_size=s.score_batch_size, max_length=s.max_seq_length)
    smoke_check(scorer)
    return scorer


def check_environment(settings: Settings) -> None:
    """Faults of this host's settings, not of a model (no GPU, an impossible backend/precision pair): they must
    stop start-up with one line instead of refusing every version in the registry."""
    resolve_device(settings.device)
    check_choice(settings.backend, settings.precision)


def _try(settings: Settings, engine: Engine, row: ModelVersion,
         load: Callable[[Path], Scorer]) -> tuple[Scorer | None, str]:
    """Load ``row``'s model, or record its refusal and return the reason."""
    path = model_path(row, settings)
    try:
        return load(path), ""
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - ModelLoadError, or whatever a broken directory raises
        reason = one_line(error)
    log.error("refusing model %s from %s (%s)", row.version, path, reason)
    try:
        record_refusal(engine, row.version, reason)
    except Exception as db_error:  # noqa: BLE001 - serving matters more than the record
        log.error("could not record the refusal of %s in the registry (%s)", row.version, one_line(db_error))
    return None, reason


@dataclass(frozen=True)
class Served:
    scorer: Scorer
    version: str  # the registry version that serves
    champion: ModelVersion
    refusal: str | None = None  # why the champion does not serve, on one line; None when it does


def serve_last_good(settings: Settings, engine: Engine, load: Callable[[Path], Scorer]) -> Served:
    """The champion's scorer, else the last good version's. :class:`ConfigError` when the registry is empty or no
    version loads."""
    row = champion(engine)
    if row is None:
        raise ConfigError(NO_MODEL)
    check_environment(settings)
    if row.refused_at is not None:
        problem = f"champion {refusal_text(row)}"
    else:
        scorer, reason = _try(settings, engine, row, load)
        if scorer is not None:
            log.info("serving the registry's champion %s from %s", row.version, scorer.model_dir)
            return Served(scorer, row.version, row)
        problem = f"champion {row.version} does not load ({reason})"
    for earlier in earlier_champions(engine, exclude=row.id):
        scorer, _ = _try(settings, engine, earlier, load)
        if scorer is not None:
            log.warning("serving %s, the last good version, instead of the registry's: %s; promote a working "
                        "version (`finpulse models promote VERSION`) to change it", earlier.version, problem)
            return Served(scorer, earlier.version, row, f"{problem}; serving {earlier.version}")
    raise ConfigError(f"no model to serve: {problem}, and no earlier champion loads; promote a working version "
                      "with `finpulse models promote VERSION` or set FINPULSE_MODEL_DIR")


class ModelSource:
    """Serves one scorer, loaded on first use: ``FINPULSE_MODEL_DIR``, else :func:`serve_last_good`."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._scorer: Scorer | None = None
        self._watcher: ChampionWatcher | None = None
        self.served_version: str | None = None  # the registry version chosen at start-up (hot swaps follow)

    @property
    def refusal(self) -> str | None:
        """Why the registry's champion is not what serves (one line, for health reports), or None."""
        return self._watcher.refusal if self._watcher is not None else None

    def load(self, model_dir: Path) -> Scorer:
        return load_checked(model_dir, self.settings)

    def current(self) -> Scorer:
        if self._scorer is None:
            if self.settings.model_dir is not None:  # pinned: no registry, no fallback
                self._scorer = self.load(self.settings.model_dir)
            else:  # serving the registry's champion: follow it (hot swap)
                served = serve_last_good(self.settings, self.engine, self.load)
                self._scorer, self.served_version = served.scorer, served.version
                self._watcher = ChampionWatcher(self.settings, self.engine, served.scorer, self.load,
                                                refused=served.champion if served.refusal else None,
                                                refusal=served.refusal)
        elif self._watcher is not None:
            self._scorer = self._watcher.next_scorer(self._scorer)
        return self._scorer
