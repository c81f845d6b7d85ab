"""The test-load that every promotion runs first: manual (``finpulse models promote|rollback``, the dashboard's
Models page) and automatic (the retraining gate).

The model is loaded exactly as a consumer would serve it (device, precision, backend from the settings) and scores
a few short texts, which must give finite probabilities (:func:`monitor.scoring.model_source.load_checked`, the
same function the consumers load with). A model that fails is refused with one line naming the version, what
failed and the fix; nothing in the registry changes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from monitor.core.errors import ConfigError, ModelLoadError
from monitor.core.settings import Settings
from monitor.scoring.champion import one_line
from monitor.scoring.model_source import load_checked
from monitor.scoring.scorer import Scorer

log = logging.getLogger(__name__)


def check_model(path: Path, settings: Settings, version: str, action: str = "promote") -> Scorer:
    """The loaded, smoke-checked scorer; :class:`ModelLoadError` (one line) when ``version`` cannot serve.

    A :class:`ConfigError` (this host's settings cannot load any model, e.g. an impossible backend/precision pair)
    passes through unchanged: it is not the model's fault."""
    log.info("test-loading model %s from %s before the %s", version, path, action)
    try:
        scorer = load_checked(path, settings)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - ModelLoadError, or whatever a broken directory raises
        raise ModelLoadError(f"refusing to {action} {version}: its test-load from {path} failed "
                             f"({one_line(error)}); fix or replace the model files (or train a new version) and "
                             "try again") from None
    log.info("model %s passed its test-load (%s %s)", version, scorer.engine, scorer.precision)
    return scorer
