"""Imports every table module so ``SQLModel.metadata`` is complete (Alembic, tests, the dashboard)."""

from schemas.alerts import Alert, AlertRule, AlertSilence, AlertState, Notification
from schemas.consumers import ConsumerHeartbeat
from schemas.delivery import DeliveryAttempt
from schemas.news import News
from schemas.registry import LabelledNews, ModelVersion
from schemas.retraining import DriftReport, JobLock, JobRun
from schemas.signals import EntitySignal, NewsEntity

__all__ = [
    "Alert", "AlertRule", "AlertSilence", "AlertState", "ConsumerHeartbeat", "DeliveryAttempt", "DriftReport",
    "EntitySignal", "JobLock", "JobRun", "LabelledNews", "ModelVersion", "News", "NewsEntity", "Notification",
]
