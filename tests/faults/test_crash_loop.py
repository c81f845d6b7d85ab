"""A message that kills the process itself is recognised after repeated crashes on its offset and dead-lettered.

The consumer runs in a subprocess whose scorer calls ``os._exit`` on one text (tests/faults/crashing_consumer.py),
restarted after each death as an orchestrator would. The crash guard narrows the crash down to one offset (one
message per batch after the first death) and dead-letters it as ``crash_loop`` after FINPULSE_POISON_MAX_CRASHES
deaths on that message alone; every other message is stored exactly once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monitor.core import db
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.dead_letter import HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_STAGE
from tests.faults.crashing_consumer import EXIT_CODE, KILL_TEXT
from tests.stream_helpers import (
    REPO,
    consumer_settings,
    encode,
    log_tail,
    news,
    publish,
    read_topic,
    row_counts,
    settings_env,
)

MAX_CRASHES = 2


def test_a_message_that_kills_the_process_is_dead_lettered_after_repeated_crashes(
    broker: EmbeddedBroker, topics: tuple[str, str], sqlite_url: str, tiny_model_dir: Path, tmp_path: Path,
) -> None:
    db.upgrade(sqlite_url)
    items = [news(i) for i in range(30)]
    items[17]["headline"] = f"ACME {KILL_TEXT} quarter"
    coords = publish(broker.bootstrap, topics[0], [(b"one-partition", encode(item)) for item in items])
    settings = consumer_settings(broker.bootstrap, topics, sqlite_url, tiny_model_dir, batch_max_messages=8)
    env = {**settings_env(settings), "FINPULSE_POISON_MAX_CRASHES": str(MAX_CRASHES)}
    log_path = tmp_path / "consume.log"
    exits = []
    for _ in range(MAX_CRASHES + 3):  # an orchestrator restarting the process
        with log_path.open("ab") as out:
            done = subprocess.run([sys.executable, "-m", "tests.faults.crashing_consumer"], cwd=REPO, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=180)
        exits.append(done.returncode)
        if done.returncode == 0:
            break
    assert exits == [EXIT_CODE] * (MAX_CRASHES + 1) + [0], (exits, log_tail(log_path))
    # The first death was in a batch of several messages; then one at a time, MAX_CRASHES deaths on the culprit.
    assert "processing them one at a time" in log_path.read_text()
    assert row_counts(sqlite_url) == (29, 29)
    dead = read_topic(broker.bootstrap, topics[1], expected=1)
    assert len(dead) == 1
    headers = {name: value.decode() for name, value in dead[0].headers}
    assert (int(headers[HEADER_PARTITION]), int(headers[HEADER_OFFSET])) == coords[17]
    assert (headers[HEADER_ERROR], headers[HEADER_STAGE]) == ("crash_loop", "process")
