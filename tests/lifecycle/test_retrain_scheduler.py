"""One retraining at a time: the database lock, once-per-slot runs, the persistent schedule, two schedulers."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, func, select

from monitor.core import db
from monitor.core.db_lock import DbLock
from monitor.lifecycle import registry
from monitor.lifecycle.retrain import LOCK_NAME, RetrainOutcome, retrain
from monitor.lifecycle.scheduler import RETRAIN_JOB_ID, _ensure_job, build_scheduler, parse_spec, slot_for
from schemas.retraining import JobRun
from schemas.types import utcnow
from tests.retrain_helpers import add_labels, make_champion, retrain_settings, settings_env
from tests.stream_helpers import REPO, log_tail, wait_for

HOLD_LOCK = """
import sys, time
from monitor.core import db
from monitor.core.db_lock import DbLock
lock = DbLock(db.make_engine(sys.argv[1]), "held-by-child", ttl_s=2.0)
assert lock.try_acquire()
print("held", flush=True)
time.sleep(120)
"""


def retrain_runs(url: str) -> list[JobRun]:
    engine = db.make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(JobRun).where(col(JobRun.job) == "retrain").order_by(col(JobRun.id))))
    finally:
        engine.dispose()


def test_slot_is_the_fire_time_the_run_belongs_to() -> None:
    at = datetime(2026, 3, 1, 2, 0, 5, tzinfo=UTC)
    assert slot_for("cron:0 2 * * *", at, 3600) == "2026-03-01T02:00:00Z"
    assert slot_for("cron:0 2 * * *", at + timedelta(minutes=50), 3600) == "2026-03-01T02:00:00Z"
    assert slot_for("cron:*/5 * * * *", at + timedelta(minutes=7), 3600) == "2026-03-01T02:05:00Z"
    assert slot_for("at:2026-03-01T01:59:00+00:00", at, 3600) == "2026-03-01T01:59:00Z"


def test_lock_excludes_waits_and_is_released(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = db.make_engine(db_url)
    first, second = DbLock(engine, "job"), DbLock(engine, "job")
    assert first.try_acquire() and not second.try_acquire()
    with caplog.at_level(logging.INFO, logger="monitor.core.db_lock"):
        assert not second.acquire(wait=True, poll_s=0.05, timeout_s=0.3)
    assert f"waiting for the 'job' lock held by {first.owner}" in caplog.text
    other = DbLock(engine, "other")
    assert other.try_acquire()  # locks of other names are independent
    other.release()
    first.release()
    assert second.try_acquire()
    second.release()
    engine.dispose()


def test_a_dead_holders_lock_is_freed(db_url: str) -> None:
    """SQLite: the row expires once its holder stops refreshing it; PostgreSQL: the session ends with the process."""
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, db_url], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"held"
        engine = db.make_engine(db_url)
        waiter = DbLock(engine, "held-by-child")
        assert not waiter.acquire(wait=True, poll_s=0.2, timeout_s=3.0)  # alive: refreshed beyond its 2 s ttl
    finally:
        child.kill()
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    wait_for(waiter.try_acquire, 30, "the dead holder's lock to be free")
    waiter.release()
    engine.dispose()


def test_scheduled_run_waits_for_the_lock_and_each_slot_runs_once(
    db_url: str, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = retrain_settings(db_url, tmp_path)
    make_champion(db_url, settings.models_dir, tiny_model_dir)
    engine = db.make_engine(db_url)
    add_labels(engine, 0, 5)
    slot = "2026-03-01T02:00:00Z"
    holder = DbLock(engine, LOCK_NAME)
    assert holder.try_acquire()
    assert retrain(settings, engine=engine, wait=False).status == "busy"
    outcome: list[RetrainOutcome] = []
    with caplog.at_level(logging.INFO):
        worker = threading.Thread(target=lambda: outcome.append(
            retrain(settings, engine=engine, trigger="schedule", slot=slot)))
        worker.start()
        wait_for(lambda: "waiting for the 'retrain' lock held by" in caplog.text, 30, "the waiting log line")
        holder.release()
        worker.join(60)
    assert outcome[0].status == "skipped" and "fewer than FINPULSE_RETRAIN_MIN_LABELS" in outcome[0].reason
    again = retrain(settings, engine=engine, trigger="schedule", slot=slot)
    assert again.status == "skipped" and "already handled by" in again.reason
    runs = retrain_runs(db_url)
    assert [(run.slot, run.trigger, run.status) for run in runs] == [(slot, "schedule", "skipped")]
    engine.dispose()


def test_restart_keeps_a_missed_run_and_takes_a_changed_schedule(db_url: str, tmp_path: Path) -> None:
    settings = retrain_settings(db_url, tmp_path)
    missed = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    first = build_scheduler(settings)
    first.start(paused=True)
    _ensure_job(first, RETRAIN_JOB_ID, "monitor.lifecycle.scheduler:scheduled_retrain", "cron:0 2 * * *")
    assert first.get_job(RETRAIN_JOB_ID).next_run_time > utcnow()
    # As stored by a scheduler that went down before the job was due (modify_job would wake the paused loop).
    first.add_job("monitor.lifecycle.scheduler:scheduled_retrain", parse_spec("cron:0 2 * * *"),
                  kwargs={"spec": "cron:0 2 * * *"}, id=RETRAIN_JOB_ID, name=RETRAIN_JOB_ID, replace_existing=True,
                  next_run_time=missed)
    first.shutdown(wait=False)

    again = build_scheduler(settings)
    again.start(paused=True)
    try:
        _ensure_job(again, RETRAIN_JOB_ID, "monitor.lifecycle.scheduler:scheduled_retrain", "cron:0 2 * * *")
        job = again.get_job(RETRAIN_JOB_ID)
        assert job.next_run_time == missed and job.coalesce and job.max_instances == 1  # fires once on resume
        assert len(again.get_jobs()) == 1
        _ensure_job(again, RETRAIN_JOB_ID, "monitor.lifecycle.scheduler:scheduled_retrain", "cron:30 3 * * *")
        job = again.get_job(RETRAIN_JOB_ID)
        assert job.next_run_time > utcnow() and (job.next_run_time.hour, job.next_run_time.minute) == (3, 30)
    finally:
        again.shutdown(wait=False)


def test_a_job_stored_by_an_older_finpulse_is_replaced(db_url: str, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    settings = retrain_settings(db_url, tmp_path)
    first = build_scheduler(settings)
    first.start(paused=True)
    _ensure_job(first, RETRAIN_JOB_ID, "monitor.lifecycle.scheduler:scheduled_retrain", "cron:0 2 * * *")
    first.shutdown(wait=False)
    # Rewrite the stored job as finpulse stored it before its modules moved (APScheduler's own pickled state).
    engine = db.make_engine(db_url)
    with engine.begin() as connection:
        row = connection.execute(text("SELECT job_state FROM apscheduler_jobs WHERE id = :id"),
                                 {"id": RETRAIN_JOB_ID}).one()
        state = pickle.loads(row[0])  # the job store's own format, written by this test
        state["func"] = "monitor.scheduler:scheduled_retrain"
        connection.execute(text("UPDATE apscheduler_jobs SET job_state = :state WHERE id = :id"),
                           {"state": pickle.dumps(state), "id": RETRAIN_JOB_ID})
    engine.dispose()
    again = build_scheduler(settings)
    again.start(paused=True)
    try:
        with caplog.at_level(logging.WARNING):
            _ensure_job(again, RETRAIN_JOB_ID, "monitor.lifecycle.scheduler:scheduled_retrain", "cron:0 2 * * *")
        assert "names code that no longer exists" in caplog.text
        assert again.get_job(RETRAIN_JOB_ID).func_ref == "monitor.lifecycle.scheduler:scheduled_retrain"
    finally:
        again.shutdown(wait=False)


@pytest.mark.slow
def test_two_schedulers_started_together_retrain_once(pg_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    db.upgrade(pg_url)
    settings = retrain_settings(pg_url, tmp_path, drift_cron="0 0 1 1 *", retrain_cron="0 0 1 1 *")
    make_champion(pg_url, settings.models_dir, tiny_model_dir)
    engine = db.make_engine(pg_url)
    add_labels(engine, 0, 60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINPULSE_")}
    env.update(settings_env(settings), FINPULSE_LOG_LEVEL="INFO")
    at = (utcnow() + timedelta(seconds=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    logs = [tmp_path / f"scheduler-{i}.log" for i in range(2)]
    procs = []
    for log_path in logs:
        with log_path.open("wb") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "monitor.app", "scheduler", "--retrain-at", at],
                                          cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        wait_for(lambda: any(run.finished_at for run in retrain_runs(pg_url)), 300,
                 "a finished retraining", poll_s=0.5)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(120) for proc in procs]
    text = "\n".join(log_tail(path, 400) for path in logs)
    assert codes == [0, 0] and "Traceback" not in text, text
    runs = retrain_runs(pg_url)
    assert [(run.slot, run.status) for run in runs] == [(at, "promoted")], text
    assert len(registry.list_versions(engine)) == 2, text
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(JobRun)).one() == 1
    assert text.count("retraining v0 on ") == 1, text  # trained once, in one of the two processes
    engine.dispose()
