"""Hot swap: follow the registry's champion without a restart, switching only between two batches.

:class:`ChampionWatcher` is asked by :class:`monitor.scoring.model_source.ModelSource` before each batch. Every
``model_poll_interval_s`` it starts a short background thread that reads the champion row; a champion at a new
path is loaded *and smoke-tested* (:func:`monitor.scoring.scorer.load_scorer`) on that thread while the consumer keeps
scoring with the old model, and the finished scorer is handed over at the next batch boundary. A batch is
therefore always scored by one version, no message is skipped or scored twice, and each row's
``news.model_version`` names the model that scored it.

A model that fails to load or fails the smoke check is refused: the old model keeps serving, the error is logged
and appended to that version's ``model_version.notes`` (shown on the dashboard's Models page), and the same
champion is not retried until the registry points somewhere else.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from monitor.core.db import session_scope
from monitor.core.settings import Settings
from monitor.scoring.champion import champion, model_path
from monitor.scoring.scorer import Scorer
from schemas.registry import ModelVersion
from schemas.types import utcnow

log = logging.getLogger(__name__)

NOTES_MAX = 2000


def record_refusal(engine: Engine, version: str, message: str) -> None:
    """Append a dated line to the version's notes (newest kept when the column is full)."""
    line = f"{utcnow():%Y-%m-%d %H:%M:%S} UTC refused by consumer {socket.gethostname()}:{os.getpid()}: {message}"
    with session_scope(engine) as session:
        row = session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).first()
        if row is None:
            return
        notes = f"{row.notes}\n{line}" if row.notes else line
        row.notes = notes[-NOTES_MAX:]
        session.add(row)


class ChampionWatcher:
    def __init__(self, settings: Settings, engine: Engine, serving: Scorer, load: Callable[[Path], Scorer]) -> None:
        self.settings, self.engine, self._load = settings, engine, load
        self._lock = threading.Lock()
        self._serving = serving.model_dir.resolve()
        self._refused: Path | None = None
        self._ready: Scorer | None = None
        self._checker: threading.Thread | None = None
        self._next_check = time.monotonic() + settings.model_poll_interval_s

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

    def _champion(self) -> tuple[str, Path] | None:
        row = champion(self.engine)
        if row is None:
            return None
        return row.version, model_path(row, self.settings).resolve()

    def _check(self) -> None:
        try:
            found = self._champion()
        except Exception as error:  # noqa: BLE001 - a briefly unreachable registry must not stop scoring
            log.warning("model poll: could not read the champion (%s: %s); will retry", type(error).__name__, error)
            return
        if found is None:
            return
        version, path = found
        with self._lock:
            if path in (self._serving, self._refused):
                return
        log.info("new champion %s at %s: loading it in the background", version, path)
        try:
            scorer = self._load(path)
        except Exception as error:  # noqa: BLE001 - ModelLoadError, or whatever a broken directory raises
            message = f"{type(error).__name__}: {error}"
            log.error("refusing champion %s from %s (%s); the current model keeps serving", version, path, message)
            with self._lock:
                self._refused = path
            try:
                record_refusal(self.engine, version, message)
            except Exception:
                log.exception("could not record the refusal of %s in the registry", version)
            return
        with self._lock:
            self._serving, self._refused, self._ready = path, None, scorer
