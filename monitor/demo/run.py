"""The demo run behind ``finpulse demo`` (``make demo``): the whole product on one machine, from one command.

Steps: migrate the database, add the example alert rules (once), train a model on the bundled corpus when there is
no champion, start the embedded broker, the consumer, a live news stream and the dashboard. The broker and the
dashboard are child processes in their own process groups (:mod:`monitor.demo.subprocesses`); the consumer and the
stream are threads of this process. Ctrl-C or SIGTERM stops the stream, lets the consumer finish and commit its
batch, then stops the dashboard and the broker, and exits 0. A second Ctrl-C kills everything at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

import typer

from monitor.core import db
from monitor.core.errors import FinpulseError
from monitor.core.settings import get_settings, safe_database_url
from monitor.demo.setup import (
    DEMO_RULES,
    champion_dir,
    check_port,
    dashboard_login,
    describe_rule,
    firing_alerts,
    seed_rules,
    stream_files,
    train_demo_model,
    wait_healthy,
)
from monitor.demo.stream import NewsStream, run_tag
from monitor.demo.subprocesses import child_options, kill_group, stop_group
from monitor.stream.broker import EmbeddedBroker, create_topics
from monitor.stream.consumer import NewsConsumer

log = logging.getLogger(__name__)

STATUS_EVERY_S = 15.0
# The demo loops its files, so the same headline comes back every pass: repeats further apart than this count
# as new stories (the default window, a day, would keep them out of every signal after the first pass).
DEMO_DEDUP_WINDOW_S = 60


def _say(step: str, text: str) -> None:
    typer.echo(f"  {step:<10} {text}")


class Demo:
    """One demo run; :meth:`run` returns the exit code. Everything it started is stopped before it returns."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.o = options
        self.settings = get_settings()
        self.stop_requested = threading.Event()
        self.interruptible = False  # while training: a signal raises KeyboardInterrupt to abandon it
        self.broker: Any = None
        self.consumer: Any = None
        self.consumer_thread: threading.Thread | None = None
        self.consumer_error: BaseException | None = None
        self.stream: Any = None
        self.dashboard: subprocess.Popen[bytes] | None = None
        self.topics: dict[str, str] = {}  # this run's topics, for the dashboard process's environment
        self._logs: list[IO[bytes]] = []

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested.is_set():  # the second signal: no more waiting

            for process in (self.dashboard, self.broker.process if self.broker else None):
                if process is not None:
                    kill_group(process)
            os._exit(130)
        self.stop_requested.set()
        if self.interruptible:
            raise KeyboardInterrupt

    def prepare(self) -> Path | None:
        """Database, rules, model; returns the model directory to serve (None = the registry's champion)."""
        s = self.settings
        check_port(self.o["port"], "--port", "FINPULSE_BROKER_PORT")  # before training: learn it at once
        if self.o["dashboard"]:
            check_port(self.o["dashboard_port"], "--dashboard-port", "FINPULSE_DASHBOARD_PORT")
        engine = db.make_engine(s.database_url)
        try:
            before = db.current_revision(engine)
            db.upgrade(s.database_url)
            after = db.current_revision(engine)
            state = "up to date" if before == after else f"migrated from {before or 'empty'}"
            _say("database", f"{safe_database_url(s.database_url)} at revision {after} ({state})")
            added = seed_rules(engine)
            for rule in DEMO_RULES:
                _say("rules", describe_rule(rule) + ("  (added)" if rule.name in added else "  (kept)"))
            if self.o["model"] is not None:
                _say("model", f"{self.o['model']} (--model)")
                return Path(self.o["model"])
            if s.model_dir is not None:
                _say("model", f"{s.model_dir} (FINPULSE_MODEL_DIR)")
                return s.model_dir
            found = champion_dir(s, engine)
        finally:
            engine.dispose()
        if found is not None:
            _say("model", f"champion {found[0]} ({found[1]})")
            return None
        _say("model", "no champion yet: training one on the bundled sample corpus (about 2-4 min on 2 CPU cores)")
        self.interruptible = True
        try:
            report = train_demo_model(s)
        finally:
            self.interruptible = False
        _say("model", report.line())
        _say("model", f"registered {report.version} as champion ({report.path})")
        return None

    def _log_file(self, name: str) -> IO[bytes]:
        folder = Path(self.o["logs"])
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / name).open("ab")
        self._logs.append(handle)
        return handle

    def start(self, model_dir: Path | None) -> None:
        # A topic of its own per run: the broker keeps topics in memory only, so offsets start again at 0 on every
        # run, and rows stored by an earlier run hold the same (topic, partition, offset) coordinates.
        tag = run_tag()
        s = self.settings.model_copy(update={"kafka_topic": f"{self.settings.kafka_topic}.{tag}",
                                             "kafka_dead_letter_topic": f"{self.settings.kafka_topic}.{tag}.dlq"})
        self.topics = {"FINPULSE_KAFKA_TOPIC": s.kafka_topic,
                       "FINPULSE_KAFKA_DEAD_LETTER_TOPIC": s.kafka_dead_letter_topic}
        self.broker = EmbeddedBroker(self.o["port"], log_file=Path(self.o["logs"]) / "broker.log",
                                     popen_options=child_options())
        Path(self.o["logs"]).mkdir(parents=True, exist_ok=True)
        self.broker.start()
        create_topics(self.broker.bootstrap, s.kafka_topics, s.kafka_partitions)
        _say("broker", f"tansu on {self.broker.bootstrap} (in memory), topics {', '.join(s.kafka_topics)}")
        stream_settings = s.model_copy(update={
            "kafka_bootstrap": self.broker.bootstrap, "kafka_security_protocol": "PLAINTEXT",
            "kafka_sasl_mechanism": None, "dedup_window_s": min(s.dedup_window_s, DEMO_DEDUP_WINDOW_S),
            "model_dir": model_dir})
        if not self.o["verbose"]:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # the weight-loading bar
        self.consumer = NewsConsumer(stream_settings)  # loads the model; the thread then owns the scorer
        _say("consumer", f"scoring with model {self.consumer.scorers.current().version} "
                         f"(batches of up to {s.batch_max_messages})")
        self.consumer_thread = threading.Thread(target=self._consume, name="demo-consumer", daemon=True)
        self.consumer_thread.start()
        files, described = stream_files(self.o["file"])
        self.stream = NewsStream(stream_settings, files, rate=self.o["rate"], limit=self.o["limit"], tag=tag,
                                 history_s=self.o["history"] * 60).start()
        pace = f"{self.o['rate']:g} msg/s" if self.o["rate"] > 0 else "as fast as possible"
        cap = f", {self.o['limit']} messages" if self.o["limit"] else ", looping"
        _say("stream", f"{described} at {pace}{cap}; published_at = send time")
        if self.stream.history:
            _say("stream", f"first {self.stream.history} messages at once, stamped over the last {self.o['history']:g} "
                           "min, so the charts have a past")
        if self.o["dashboard"]:
            self._start_dashboard()

    def _consume(self) -> None:
        try:
            self.consumer.run()
        except BaseException as error:  # reported by the main loop, which then stops everything
            self.consumer_error = error
            log.debug("consumer failed", exc_info=True)

    def _start_dashboard(self) -> None:
        login = dashboard_login(self.settings)
        port, address = self.o["dashboard_port"], self.o["address"]
        command = [sys.executable, "-m", "monitor.app", "dashboard", "--port", str(port), "--address", address]
        # The dashboard is configured with this run's topics, like the consumer whose lag and health it shows.
        self.dashboard = subprocess.Popen(command, env={**login.env, **self.topics},  # nosec B603 # argv, no shell
                                          stdout=self._log_file("dashboard.log"), stderr=subprocess.STDOUT,
                                          **child_options())
        local = f"http://127.0.0.1:{port}"
        if not wait_healthy(local, self.dashboard, self.stop_requested):
            if self.stop_requested.is_set():
                return
            raise FinpulseError(f"the dashboard did not start; see {Path(self.o['logs']) / 'dashboard.log'}")
        everywhere = "0.0.0.0"  # nosec B104 # only compared with: the dashboard listens on all interfaces
        shown = local if address in ("127.0.0.1", everywhere) else f"http://{address}:{port}"
        _say("dashboard", f"{shown}  {login.how}")

    def problem(self) -> str | None:
        if self.broker.process is None or self.broker.process.poll() is not None:
            return f"the broker exited; see {Path(self.o['logs']) / 'broker.log'}"
        if self.consumer_thread is not None and not self.consumer_thread.is_alive():
            return f"the consumer stopped: {self.consumer_error or 'no error given'}"
        if self.stream.error is not None:
            return f"the news stream failed: {self.stream.error}"
        if self.dashboard is not None and self.dashboard.poll() is not None:
            return f"the dashboard exited; see {Path(self.o['logs']) / 'dashboard.log'}"
        return None

    def status(self) -> str:
        summary = self.consumer.summary
        firing = firing_alerts(self.consumer.engine)
        return (f"{time.strftime('%H:%M:%S')}  sent {self.stream.sent}, scored {summary.messages}, "
                f"stored {summary.inserted}, dead-lettered {summary.dead_lettered}, {firing} alerts firing")

    def watch(self) -> int:
        duration = self.o["duration"]
        deadline = None if duration is None else time.monotonic() + duration
        _say("running", "Ctrl-C stops everything" + (f"; stopping by itself after {duration:g} s" if duration else ""))
        next_status, stream_done = time.monotonic() + STATUS_EVERY_S, False
        while not self.stop_requested.wait(0.5):
            trouble = self.problem()
            if trouble is not None:
                typer.echo(f"error: {trouble}", err=True)
                return 1
            if deadline is not None and time.monotonic() >= deadline:
                _say("stopping", f"--duration {duration:g} s reached")
                return 0
            if self.stream.finished and not stream_done:
                stream_done = True
                _say("stream", f"done: {self.stream.sent} messages sent (--limit); the rest keeps running")
            if time.monotonic() >= next_status:
                next_status += STATUS_EVERY_S
                _say("status", self.status())
        _say("stopping", "signal received: finishing the consumer's batch (Ctrl-C again to kill at once)")
        return 0

    def shutdown(self) -> None:
        """Stop in dependency order: the producer, the consumer (finishes and commits), the dashboard, the broker."""
        if self.stream is not None:
            self.stream.stop()
        if self.consumer_thread is not None:
            self.consumer.stop()
            self.consumer_thread.join(60)
        if self.dashboard is not None:
            stop_group(self.dashboard)
        if self.broker is not None:
            self.broker.stop()
        for handle in self._logs:
            handle.close()
        if self.consumer is not None and self.stream is not None:
            summary, where = self.consumer.summary, safe_database_url(self.settings.database_url)
            _say("stopped", f"sent {self.stream.sent}, scored {summary.messages}, stored {summary.inserted}, "
                            f"dead-lettered {summary.dead_lettered}; data kept in {where}")

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        typer.echo("finpulse demo")
        try:
            model_dir = self.prepare()
            if self.stop_requested.is_set():
                return 0
            self.start(model_dir)
            return 0 if self.stop_requested.is_set() else self.watch()
        except KeyboardInterrupt:
            _say("stopped", "interrupted during training; no model was registered")
            return 0
        finally:
            self.shutdown()
