"""Imports every table module so ``SQLModel.metadata`` is complete (Alembic, tests, the dashboard)."""

from schemas.accounts import Account, AuditEvent, LoginThrottle
from schemas.alerts import Alert, AlertClock, AlertRule, AlertSilence, AlertState, Notification
from schemas.consumers import ConsumerHeartbeat
from schemas.delivery import DeliveryAttempt
from schemas.news import News
from schemas.registry import LabelledNews, ModelVersion
from schemas.retraining import DriftReport, JobLock, JobRun
from schemas.signals import EntitySignal, NewsEntity

__all__ = [
    "Account",
    "Alert",
    "AlertClock",
    "AlertRule",
    "AlertSilence",
    "AlertState",
    "AuditEvent",
    "ConsumerHeartbeat",
    "DeliveryAttempt",
    "DriftReport",
    "EntitySignal",
    "JobLock",
    "JobRun",
    "LabelledNews",
    "LoginThrottle",
    "ModelVersion",
    "News",
    "NewsEntity",
    "Notification",
]
