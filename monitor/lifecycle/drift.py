"""Drift check: predictions on recent news against the champion's validation predictions.

The reference is ``metrics["reference_distribution"]`` of the champion: retraining stores it (predictions on the
gold set); for a champion that lacks it (say, the first ``finpulse train`` model) it is computed once here, on
the gold labels (or the bundled validation corpus while there are too few), and stored. The current side is
every story the champion itself scored in the last ``drift_window_h`` hours (rows scored by another version would
compare two models, not two periods). Each check is stored in ``drift_report``.

Alerting reuses the alert tables: drift above ``drift_threshold`` opens one ``alert`` row (rule ``model-drift``)
and queues a ``firing`` notification in the outbox (:mod:`monitor.alerts.notify` delivers it); later checks while it is
open update it quietly, and the first check below the threshold resolves it with a ``resolved`` notification.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from finetune.data.entities import read_finpulse
from finetune.data.sample import SAMPLE_VALIDATION
from monitor.alerts.notify import DEFAULT_CHANNEL, Notifier, channel_urls
from monitor.core.db import session_scope
from monitor.core.settings import Settings
from monitor.lifecycle.drift_math import compare, distribution
from monitor.lifecycle.retrain_data import GOLD, assign_splits, load_labels
from monitor.lifecycle.retrain_eval import evaluate_served, load_served, reference_distribution
from monitor.scoring.champion import champion as current_champion
from monitor.scoring.champion import model_path
from schemas.alerts import Alert, Notification
from schemas.news import News
from schemas.registry import ModelVersion
from schemas.retraining import DriftReport
from schemas.types import utcnow

log = logging.getLogger(__name__)

DRIFT_RULE, DRIFT_METRIC, DRIFT_CHANNEL = "model-drift", "drift_js", "drift"
MIN_GOLD_FOR_REFERENCE = 30


def champion_reference(settings: Settings, engine: Engine, champion: ModelVersion) -> dict[str, Any] | None:
    """The champion's stored reference distribution, computed and stored first if it has none."""
    stored = (champion.metrics or {}).get("reference_distribution")
    if stored:
        return dict(stored)
    assign_splits(engine, settings.retrain_gold_fraction)
    examples, source = [item.example for item in load_labels(engine, split=GOLD)], "gold"
    if len(examples) < MIN_GOLD_FOR_REFERENCE and SAMPLE_VALIDATION.exists():
        examples, source = read_finpulse(SAMPLE_VALIDATION), "sample"
    reference = reference_distribution(evaluate_served(load_served(model_path(champion, settings), settings),
                                                       examples), source)
    if reference is not None:
        store_reference(engine, champion.version, reference)
    return reference


def store_reference(engine: Engine, version: str, reference: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        row = session.exec(select(ModelVersion).where(col(ModelVersion.version) == version)).one()
        row.metrics = {**(row.metrics or {}), "reference_distribution": reference}  # new dict: JSON change seen
        session.add(row)
    log.info("stored the reference prediction distribution of %s (%s, n=%s)", version, reference["source"],
             reference["n"])


def recent_distribution(engine: Engine, version: str, start: datetime, end: datetime) -> dict[str, Any]:
    with Session(engine) as session:
        rows = session.exec(select(News.sentiment, News.confidence).where(
            col(News.model_version) == version, col(News.scored_at) >= start, col(News.scored_at) <= end)).all()
    return distribution([s for s, _ in rows], [c for _, c in rows])


def drift_channels(settings: Settings) -> list[str]:
    """``default`` and ``drift`` (FINPULSE_NOTIFY_DRIFT), whichever are configured."""
    return [name for name in (DEFAULT_CHANNEL, DRIFT_CHANNEL) if channel_urls(name, settings)]


def check_drift(settings: Settings, engine: Engine, *, trigger: str = "cli", now: datetime | None = None,
                notifier: Notifier | None = None) -> DriftReport | None:
    """Compare, store a report, open/resolve the drift alert; None when there is no champion."""
    champion = current_champion(engine)
    if champion is None:
        log.info("drift check skipped: no champion model")
        return None
    end = now or utcnow()
    start = end - timedelta(hours=settings.drift_window_h)
    current = recent_distribution(engine, champion.version, start, end)
    report = DriftReport(trigger=trigger, model_version=champion.version, window_start=start, window_end=end,
                         news_count=current["n"], threshold=settings.drift_threshold, current=current)
    if current["n"] < settings.drift_min_news:
        report.note = (f"only {current['n']} stories scored by {champion.version} in the last "
                       f"{settings.drift_window_h:g} h (FINPULSE_DRIFT_MIN_NEWS={settings.drift_min_news}): no verdict")
    else:
        reference = champion_reference(settings, engine, champion)
        if reference is None:
            report.note = "the champion has no reference distribution and there is no data to compute one"
        else:
            report.reference, report.reference_source = reference, str(reference.get("source", "metrics"))
            report.label_js, report.confidence_js = compare(reference, current)
            report.js = max(report.label_js, report.confidence_js)
            report.drifted = report.js > settings.drift_threshold
    queued = _record(settings, engine, report)
    level = logging.WARNING if report.drifted else logging.INFO
    log.log(level, "drift check of %s over %d stories: label JS %s, confidence JS %s (threshold %g)%s",
            champion.version, report.news_count, _fmt(report.label_js), _fmt(report.confidence_js),
            settings.drift_threshold, " -> DRIFT" if report.drifted else (f"; {report.note}" if report.note else ""))
    if queued and notifier is not None:
        notifier.wake()
    return report


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _record(settings: Settings, engine: Engine, report: DriftReport) -> int:
    """Store the report and update the drift alert in one transaction; returns notifications queued."""
    queued = 0
    with session_scope(engine) as session:
        open_alert = session.exec(select(Alert).where(col(Alert.rule_name) == DRIFT_RULE,
                                                      col(Alert.status) == "firing")).first()
        evidence = {"report": {k: getattr(report, k) for k in ("model_version", "news_count", "label_js",
                                                             "confidence_js", "js", "threshold")},
                    "reference": report.reference, "current": report.current,
                    "window": [report.window_start.isoformat(), report.window_end.isoformat()]}
        event: str | None = None
        if report.drifted and open_alert is None:
            open_alert = Alert(rule_id=0, rule_name=DRIFT_RULE, entity="*", metric=DRIFT_METRIC, severity="warning",
                               started_at=report.window_end, value=report.js, threshold=report.threshold,
                               evidence=evidence)
            event = "firing"
        elif report.drifted and open_alert is not None:
            open_alert.value, open_alert.evidence = report.js, evidence  # still drifting: no new message
        elif report.js is not None and open_alert is not None:
            open_alert.status, open_alert.resolved_at = "resolved", report.window_end
            open_alert.resolved_value = report.js
            event = "resolved"
        if open_alert is not None:
            session.add(open_alert)
            session.flush()
            report.alert_id = open_alert.id
        if event is not None and open_alert is not None:
            title, body = _message(event, report)
            channels = drift_channels(settings)
            for channel in channels:
                session.add(Notification(alert_id=open_alert.id or 0, channel=channel, kind=event, title=title,
                                         body=body))
            queued = len(channels)
            if not channels:
                log.warning("drift alert %s recorded, but no notification channel is configured "
                            "(FINPULSE_NOTIFY_URLS or FINPULSE_NOTIFY_DRIFT)", event)
        session.add(report)
        session.flush()
        session.refresh(report)
    return queued


def _message(event: str, report: DriftReport) -> tuple[str, str]:
    if event == "resolved":
        title = f"[finpulse] RESOLVED: model drift on {report.model_version} (JS {_fmt(report.js)})"
    else:
        title = (f"[finpulse] model drift on {report.model_version}: JS {_fmt(report.js)} > "
                 f"{report.threshold:g}")

    def shares(dist: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:.0%}" for k, v in (dist.get("labels") or {}).items())

    body = (f"Predicted labels of the last {report.news_count} stories ({report.window_start:%Y-%m-%d %H:%M} to "
            f"{report.window_end:%Y-%m-%d %H:%M} UTC): {shares(report.current)}; on the champion's validation "
            f"data ({report.reference_source}): {shares(report.reference)}. Label JS {_fmt(report.label_js)}, "
            f"confidence JS {_fmt(report.confidence_js)}, threshold {report.threshold:g}. Consider labelling "
            "recent stories and `finpulse retrain`.")
    return title, body
