"""The demo's news stream: replays files to the news topic at a steady rate, in a thread that stops on request.

Like ``finpulse replay --restamp``, but it loops, and it gives every message an id unique to this run and pass:
the sink skips ids it has stored, so without that a second pass (or a second demo run on the same database)
would store nothing and the dashboard would stand still. It can first send a *history*: ``rate x history_s``
messages stamped evenly over the last ``history_s`` seconds, at once, so that the charts have a past to show and
the signals a baseline (z-scores need a few earlier buckets) from the first minute on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from monitor.core.errors import DataError
from monitor.core.settings import Settings
from monitor.stream.news_file import ColumnMap, merge_same_instant, read_news
from monitor.stream.replay import make_producer, message_key, message_value
from schemas.news import NewsIn
from schemas.types import utcnow

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0


def run_tag(now: float | None = None) -> str:
    """A short tag unique to this demo run (base-36 seconds since the epoch), e.g. ``d1b7x3kq``."""
    return "d" + _base36(int(time.time() if now is None else now))


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


class NewsStream:
    """Publishes the news of ``files`` at ``rate`` messages/s (0 = as fast as possible), looping over the files
    until ``limit`` messages were sent (None = until :meth:`stop`). ``published_at`` is the send time, except for
    the history sent first (see the module doc)."""

    def __init__(self, settings: Settings, files: Sequence[Path], *, rate: float, limit: int | None,
                 tag: str, history_s: float = 0.0) -> None:
        self.settings = settings
        self.files = list(files)
        self.rate = rate
        self.limit = limit
        self.history_s = history_s
        self.history = round(rate * history_s) if rate > 0 else 0  # messages stamped in the past
        self.run_tag = tag
        self.sent = 0
        self.passes = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-stream", daemon=True)

    def start(self) -> NewsStream:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def finished(self) -> bool:
        """The stream has ended by itself (limit reached or an error), not by :meth:`stop`."""
        return self._thread.ident is not None and not self._thread.is_alive() and not self._stop.is_set()

    def _news(self) -> Iterator[NewsIn]:
        """The files' news, pass after pass, with run- and pass-unique ids."""
        while True:
            found = False
            for path in self.files:
                rows = read_news(path, ColumnMap(), skip_bad=True, restamp=True)
                for row in merge_same_instant(rows):
                    found = True
                    yield row.news.model_copy(update={"id": f"{row.news.id}~{self.run_tag}.{self.passes}"})
            if not found:
                raise DataError(f"no valid news rows in {', '.join(map(str, self.files))}; give a CSV or JSON-lines "
                                "file with headline and time columns")
            self.passes += 1
            log.info("stream pass %d done (%d messages sent so far)", self.passes, self.sent)

    def _run(self) -> None:
        try:
            self._publish()
        except BaseException as error:  # reported by the demo's main loop, which then stops everything
            self.error = error
            log.debug("stream failed", exc_info=True)

    def history_stamp(self, index: int, now: datetime) -> datetime:
        """``published_at`` of history message ``index``: evenly spaced, oldest first, the last just before now."""
        return now - timedelta(seconds=self.history_s * (self.history - index) / self.history)

    def _publish(self) -> None:
        producer = make_producer(self.settings)
        failures: list[BaseException] = []
        history_now = utcnow()
        started = time.monotonic()
        try:
            for news in self._news():
                if self._stop.is_set() or (self.limit is not None and self.sent >= self.limit):
                    break
                live = self.sent - self.history  # messages sent live before this one (negative: history)
                if live == 0:
                    started = time.monotonic()
                if live >= 0 and self.rate > 0:  # pace against the start so that sleeps' overshoot does not add up
                    delay = started + live / self.rate - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                stamp = utcnow() if live >= 0 else self.history_stamp(self.sent, history_now)
                news = news.model_copy(update={"published_at": stamp})
                future = producer.send(self.settings.kafka_topic, key=message_key(news), value=message_value(news))
                future.add_errback(failures.append)
                self.sent += 1
                if failures:
                    raise failures[0]
            producer.flush(timeout=FLUSH_TIMEOUT_S)
        finally:
            producer.close(timeout=FLUSH_TIMEOUT_S)
