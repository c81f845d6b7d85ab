"""Imports every table module so ``SQLModel.metadata`` is complete (Alembic, tests, the dashboard)."""

from schemas.news import News
from schemas.registry import LabelledNews, ModelVersion

__all__ = ["LabelledNews", "ModelVersion", "News"]
