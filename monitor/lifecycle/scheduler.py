"""``finpulse scheduler``: APScheduler 3 runs retraining (``retrain_cron``) and the drift check (``drift_cron``).

Why it runs each job once, across restarts and across several scheduler processes:

* The jobs live in the project database (``SQLAlchemyJobStore``, table ``apscheduler_jobs``) under fixed ids.
  On start the job is re-added with ``replace_existing=True`` but *keeps its stored next run time* when its
  trigger did not change, so a run missed while the scheduler was down fires once on restart (``coalesce``,
  within ``retrain_misfire_grace_s``) and a run already done is not repeated.
* Two schedulers on one database may both see a job due (APScheduler 3 does not coordinate processes). Each run
  derives its *slot* (the trigger's fire time, identical in every process) and claims it in ``job_run``, unique
  per (job, slot); retraining first waits for the ``retrain`` database lock and logs that it is waiting, so
  the second scheduler finds the slot done and skips instead of training twice. ``max_instances=1`` keeps one
  process from overlapping itself.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from monitor.alerts.notify import Notifier
from monitor.core import db
from monitor.core.errors import ConfigError
from monitor.core.settings import Settings, get_settings
from monitor.lifecycle import job_runs
from monitor.lifecycle.drift import check_drift
from monitor.lifecycle.retrain import retrain
from schemas.types import utcnow

log = logging.getLogger(__name__)

RETRAIN_JOB_ID, DRIFT_JOB_ID = "finpulse-retrain", "finpulse-drift"
_notifier: Any = None  # the scheduler process's outbox sender, woken after a drift alert


def parse_spec(spec: str) -> BaseTrigger:
    """``cron:<crontab>`` (UTC) or ``at:<ISO-8601 time>``."""
    kind, _, value = spec.partition(":")
    try:
        if kind == "cron":
            return CronTrigger.from_crontab(value, timezone=UTC)
        if kind == "at":
            return DateTrigger(run_date=parse_time(value), timezone=UTC)
    except ValueError as error:
        raise ConfigError(f"schedule {spec!r}: {error}; expected a 5-field cron expression such as '0 2 * * *' "
                          "or an ISO-8601 time") from None
    raise ConfigError(f"schedule {spec!r}: expected 'cron:EXPR' or 'at:TIME'")


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def slot_for(spec: str, now: datetime, grace_s: float) -> str:
    """The fire time this run belongs to: the latest one at or before ``now`` (within the grace period)."""
    trigger = parse_spec(spec)
    if isinstance(trigger, DateTrigger):
        fire: datetime | None = trigger.run_date
    else:
        fire, candidate = None, trigger.get_next_fire_time(None, now - timedelta(seconds=grace_s))
        while candidate is not None and candidate <= now:
            fire, candidate = candidate, trigger.get_next_fire_time(candidate, candidate + timedelta(seconds=1))
    return (fire or now).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_retrain(spec: str) -> None:
    """The retraining job (referenced by name from the job store)."""
    settings = get_settings()
    slot = slot_for(spec, utcnow(), settings.retrain_misfire_grace_s)
    log.info("scheduled retraining for slot %s", slot)
    outcome = retrain(settings, trigger="schedule", slot=slot)
    log.info("scheduled retraining %s: %s: %s", slot, outcome.status, outcome.reason)


def scheduled_drift(spec: str) -> None:
    """The drift job: one report per slot; a drift can start a retraining (``drift_retrain``)."""
    settings = get_settings()
    run_drift(settings, slot_for(spec, utcnow(), settings.retrain_misfire_grace_s), trigger="schedule")


def run_drift(settings: Settings, slot: str | None, trigger: str = "cli") -> Any:
    engine = db.make_engine(settings.database_url)
    try:
        run = job_runs.start(engine, "drift", trigger=trigger, slot=slot)
        if run is None:
            log.info("drift check %s already done by another scheduler; skipping", slot)
            return None
        try:
            report = check_drift(settings, engine, trigger=trigger, notifier=_notifier)
        except Exception as error:
            job_runs.finish(engine, run, "failed", f"{type(error).__name__}: {error}")
            raise
        if _notifier is None and report is not None and report.alert_id is not None:
            Notifier(engine, settings).drain_once()  # one-off `finpulse drift`: send what it queued now
        drifted = report is not None and report.drifted
        job_runs.finish(engine, run, "done", report.note if report is not None else "no champion",
                        {"report_id": report.id if report else None, "js": report.js if report else None,
                         "drifted": drifted})
    finally:
        engine.dispose()
    if drifted and settings.drift_retrain:
        log.info("drift found and FINPULSE_DRIFT_RETRAIN is on: starting a retraining")
        retrain(settings, trigger="drift", wait=False)
    return report


def _ensure_job(scheduler: BackgroundScheduler, job_id: str, func: str, spec: str) -> None:
    """Add or replace the job under its fixed id, keeping the stored next run time if the trigger is unchanged."""
    trigger = parse_spec(spec)
    try:
        existing = scheduler.get_job(job_id)
    except LookupError as error:
        # The job store names the function by module path; a job stored by an older finpulse (before the modules
        # moved, e.g. monitor.scheduler:scheduled_retrain) cannot be rebuilt. Replace it; the slot log keeps runs
        # single.
        log.warning("stored job %s names code that no longer exists (%s); replacing it", job_id, error)
        existing = None
    keep = (existing is not None and str(existing.trigger) == str(trigger) and existing.kwargs == {"spec": spec}
            and existing.next_run_time is not None)
    extra: dict[str, Any] = {"next_run_time": existing.next_run_time} if keep and existing is not None else {}
    for attempt in range(3):
        try:
            job = scheduler.add_job(func, trigger, kwargs={"spec": spec}, id=job_id, name=job_id,
                                    replace_existing=True, **extra)
            break
        except (ConflictingIdError, JobLookupError) as error:
            # Another scheduler on the same job store inserted the job between our update and insert, or ran and
            # removed a one-off job in between: add it again (the slot claim in job_run keeps each run single).
            if attempt == 2:
                raise
            log.info("job %s changed under us while adding it (%s); adding it again", job_id, error)
    log.info("job %s (%s): next run %s%s", job_id, spec, getattr(job, "next_run_time", None) or extra.get(
        "next_run_time") or "-", " (kept from the job store)" if keep else "")


class _Scheduler(BackgroundScheduler):  # type: ignore[misc]
    def _process_jobs(self) -> float | None:
        # APScheduler 3 wakes its loop once more after shutdown() has set STOPPED and processes due jobs then:
        # their submission fails (the executor is gone) but their next run time is advanced anyway, so a run
        # due at that moment would be lost. A stopped scheduler processes nothing.
        if self.state == STATE_STOPPED:
            return None
        try:
            return super()._process_jobs()  # type: ignore[no-any-return]
        except JobLookupError as error:
            # Another scheduler on the same job store ran a one-off job and removed it first; unhandled, this
            # would end this scheduler's thread. The slot claim keeps the run single; just look again.
            log.info("job store changed under us (%s); another scheduler handled it", error)
            return 0.5


def build_scheduler(settings: Settings) -> BackgroundScheduler:
    engine = db.make_engine(settings.database_url)  # SQLite WAL + busy timeout, as for every other writer
    db.require_migrated(engine)
    return _Scheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        executors={"default": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": settings.retrain_misfire_grace_s},
        timezone=UTC,
    )


def run_scheduler(settings: Settings, stop: threading.Event, retrain_at: datetime | None = None) -> None:
    """Run until ``stop`` is set; then finish running jobs and return."""
    global _notifier

    specs = {RETRAIN_JOB_ID: ("monitor.lifecycle.scheduler:scheduled_retrain", f"cron:{settings.retrain_cron}"),
             DRIFT_JOB_ID: ("monitor.lifecycle.scheduler:scheduled_drift", f"cron:{settings.drift_cron}")}
    for variable, spec in (("FINPULSE_RETRAIN_CRON", specs[RETRAIN_JOB_ID][1]),
                           ("FINPULSE_DRIFT_CRON", specs[DRIFT_JOB_ID][1])):
        try:
            parse_spec(spec)  # a bad cron fails before anything starts
        except ConfigError as error:
            raise ConfigError(f"{variable}: {error}") from None
    if retrain_at is not None:
        at = retrain_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        specs[f"{RETRAIN_JOB_ID}-at-{at}"] = ("monitor.lifecycle.scheduler:scheduled_retrain", f"at:{at}")
    scheduler = build_scheduler(settings)
    engine = db.make_engine(settings.database_url)
    _notifier = Notifier(engine, settings)
    scheduler.start(paused=True)
    try:
        for job_id, (func, spec) in specs.items():
            _ensure_job(scheduler, job_id, func, spec)
        scheduler.resume()
        log.info("scheduler running (retraining %s, drift %s, UTC); SIGTERM/Ctrl-C stops it",
                 settings.retrain_cron, settings.drift_cron)
        stop.wait()
        log.info("scheduler stopping: waiting for running jobs to finish")
    finally:
        scheduler.shutdown(wait=True)
        _notifier.close()
        _notifier = None
        engine.dispose()
