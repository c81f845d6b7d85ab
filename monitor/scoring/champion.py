"""The registry's champion: which version should serve, and where its directory is.

Read by serving (:mod:`monitor.scoring.model_source`, :mod:`monitor.scoring.hot_swap`) and by the lifecycle jobs
(drift, retraining), so that all of them agree on one rule.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.core.settings import Settings
from schemas.registry import ModelVersion


def champion(engine: Engine) -> ModelVersion | None:
    """The registry's champion row (the newest promoted one, should there ever be two)."""
    with Session(engine) as session:
        query = (select(ModelVersion).where(col(ModelVersion.status) == "champion")
                 .order_by(col(ModelVersion.promoted_at).desc(), col(ModelVersion.id).desc()))
        return session.exec(query).first()


def model_path(row: ModelVersion, settings: Settings) -> Path:
    """The version's directory; registry rows may hold paths relative to FINPULSE_MODELS_DIR."""
    path = Path(row.path)
    if not path.is_absolute() and not path.exists():
        path = settings.models_dir / path
    return path
