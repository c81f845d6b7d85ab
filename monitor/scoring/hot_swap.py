"""Hot swap: follow the registry's champion without a restart, switching only between two batches.

:class:`ChampionWatcher` is asked by :class:`monitor.scoring.model_source.ModelSource` before each batch. Every
``model_poll_interval_s`` it starts a short background thread that reads the champion row; a champion at a new
path is loaded *and smoke-tested* (:func:`monitor.scoring.model_source.load_checked`) on that thread while the
consumer keeps scoring with the old model, and the finished scorer is handed over at the next batch boundary. A
batch is therefore always scored by one version, no message is skipped or scored twice, and each row's
``news.model_version`` names the model that scored it.

A model that fails to load or fails the smoke check is refused: the old model keeps serving, one ERROR line is
logged, and the refusal is recorded on the version's row (``refused_at``, ``refused_reason``, and a line in its
notes; :func:`monitor.scoring.champion.record_refusal`), shown on the dashboard's Models page. A refused champion
is not tried again, by this consumer or any other, nor after a restart, until it is promoted again (promotion
test-loads it and clears the refusal) or another version becomes champion.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from monitor.core.settings import Settings
from monitor.scoring.champion import champion, model_path, one_line, record_refusal, refusal_text
from monitor.scoring.scorer import Scorer
from schemas.registry import ModelVersion

log = logging.getLogger(__name__)


class ChampionWatcher:
    """``refusal``: why the registry's champion is not what serves (one line), or None when it is."""

    def __init__(self, settings: Settings, engine: Engine, serving: Scorer, load: Callable[[Path], Scorer],
                 *, refused: ModelVersion | None = None, refusal: str | None = None) -> None:
        self.settings, self.engine, self._load = settings, engine, load
        self._lock = threading.Lock()
        self._serving = serving.model_dir.resolve()
        self._serving_version = serving.version
        # (version, promoted_at) of the champion known to be refused (and said so): not tried, not logged again
        self._refused: tuple[str, datetime | None] | None = None if refused is None else _key(refused)
        self._ready: Scorer | None = None
        self._checker: threading.Thread | None = None
        self._next_check = time.monotonic() + settings.model_poll_interval_s
        self.refusal = refusal

    def next_scorer(self, current: Scorer) -> Scorer:
        """The scorer for the next batch: a newly loaded champion if one is ready, else ``current``."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            log.info("hot swap: now serving model %s (was %s) from the next batch on", ready.version, current.version)
            return ready
        now = time.monotonic()
        if now >= self._next_check and (self._checker is None or not self._checker.is_alive()):
            self._next_check = now + self.settings.model_poll_interval_s
            # A daemon thread per check: nothing to stop when the consumer ends, and a slow database or a slow
            # model load never holds up the batch loop.
            self._checker = threading.Thread(target=self._check, name="finpulse-model-watch", daemon=True)
            self._checker.start()
        return current

    def _check(self) -> None:
        try:
            row = champion(self.engine)
        except Exception as error:  # noqa: BLE001 - a briefly unreachable registry must not stop scoring
            log.warning("model poll: could not read the champion (%s); will retry", one_line(error))
            return
        if row is None:
            return
        path = model_path(row, self.settings).resolve()
        key = _key(row)
        with self._lock:
            if path == self._serving:
                self.refusal = None
                return
            if key == self._refused:
                return
        if row.refused_at is not None:  # refused by another consumer, or before a restart
            self._skip(row)
            return
        log.info("new champion %s at %s: loading it in the background", row.version, path)
        try:
            scorer = self._load(path)
        except Exception as error:  # noqa: BLE001 - ModelLoadError, or whatever a broken directory raises
            reason = one_line(error)
            log.error("refusing champion %s from %s (%s); model %s keeps serving", row.version, path, reason,
                      self._serving_version)
            with self._lock:
                self._refused = key
                self.refusal = f"champion {row.version} refused ({reason}); serving {self._serving_version}"
            try:
                record_refusal(self.engine, row.version, reason)
            except Exception as db_error:  # noqa: BLE001 - the refusal still holds in this process
                log.error("could not record the refusal of %s in the registry (%s)", row.version, one_line(db_error))
            return
        with self._lock:
            self._serving, self._serving_version, self._refused, self._ready = path, scorer.version, None, scorer
            self.refusal = None

    def _skip(self, row: ModelVersion) -> None:
        """A champion that another consumer refused: keep serving, and say so once (not at every poll)."""
        with self._lock:
            self._refused = _key(row)
            self.refusal = f"champion {refusal_text(row)}; serving {self._serving_version}"
        log.warning("not loading the %s: promote a working version, or %s again once fixed", self.refusal, row.version)


def _key(row: ModelVersion) -> tuple[str, datetime | None]:
    """A champion and its promotion: promoting the same version again makes a new key (and a new try)."""
    return row.version, row.promoted_at
