"""Hot swap under load: promote a new champion while the consumer streams, then force a broken one past promotion's
test-load (tests/faults/test_champion_safety.py covers the refusal paths without a stream)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from sqlmodel import Session, select

from monitor.core import db
from monitor.core.accounts import Principal
from monitor.lifecycle import registry
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.consumer import NewsConsumer, RunSummary
from schemas.news import News
from tests.helpers import make_tiny_classifier
from tests.stream_helpers import consumer_settings, encode, news, publish, wait_for

ADMIN = Principal("test-admin", "admin", "cli")


class Stream:
    """Publishes numbered news messages and remembers each one's (partition, offset)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic, self.sent = bootstrap, topic, 0
        self.coords: dict[str, tuple[int, int]] = {}

    def send(self, count: int) -> None:
        ids = range(self.sent, self.sent + count)
        coords = publish(self.bootstrap, self.topic, [(f"T{i % 13}".encode(), encode(news(i))) for i in ids])
        self.coords.update({f"news-{i}": coord for i, coord in zip(ids, coords, strict=True)})
        self.sent += count


def rows(db_url: str) -> list[News]:
    engine = db.make_engine(db_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(News)))
    finally:
        engine.dispose()


def send_until(stream: Stream, condition: object, what: str) -> None:
    """Keep the stream flowing in small chunks until ``condition()`` holds: the swap happens mid-stream."""
    def flowing() -> bool:
        if condition():  # type: ignore[operator]
            return True
        stream.send(20)
        return False

    wait_for(flowing, 120, what, poll_s=0.1)


@pytest.mark.slow
def test_promotion_swaps_between_batches_and_a_broken_model_is_refused(
    broker: EmbeddedBroker, topics: tuple[str, str], db_url: str, tmp_path: Path,
) -> None:
    v1 = make_tiny_classifier(tmp_path / "v1", seed=0, version="v1")
    v2 = make_tiny_classifier(tmp_path / "v2", seed=1, version="v2")
    broken = tmp_path / "v3"
    shutil.copytree(v1, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    for version, path in (("v1", v1), ("v2", v2), ("v3", broken)):
        registry.register(db_url, version=version, path=str(path), base_model="tiny", metrics={}, train_args={})
    settings = consumer_settings(broker.bootstrap, topics, db_url, v1).model_copy(
        update={"model_dir": None, "model_poll_interval_s": 0.2})
    consumer = NewsConsumer(settings)
    summary: list[RunSummary] = []
    worker = threading.Thread(target=lambda: summary.append(consumer.run()))
    worker.start()
    stream = Stream(broker.bootstrap, topics[0])
    try:
        stream.send(200)
        wait_for(lambda: len(rows(db_url)) == 200, 120, "the first 200 rows")
        registry.promote(db_url, "v2", by=ADMIN)
        send_until(stream, lambda: any(r.model_version == "v2" for r in rows(db_url)), "rows scored by v2")
        stream.send(100)
        registry.promote(db_url, "v3", force=True, by=ADMIN)  # without --force, promotion's test-load refuses it

        def refused() -> bool:
            row = next(r for r in registry.list_versions(db_url) if r.version == "v3")
            return row.refused_at is not None

        send_until(stream, refused, "the broken model to be refused")
        after_refusal = stream.sent
        stream.send(100)
        wait_for(lambda: len(rows(db_url)) == stream.sent, 120, "every message to be stored")
    finally:
        consumer.stop()
        worker.join(60)
    stored = rows(db_url)
    assert summary and summary[0].messages == stream.sent == len(stored)
    by_id = {row.id: row for row in stored}
    assert {i: (r.kafka_partition, r.kafka_offset) for i, r in by_id.items()} == stream.coords  # each once
    assert {row.model_version for row in stored} == {"v1", "v2"}
    assert all(by_id[f"news-{i}"].model_version == "v1" for i in range(200))
    assert all(by_id[f"news-{i}"].model_version == "v2" for i in range(after_refusal, stream.sent))
    for partition in range(4):
        versions = [r.model_version for r in sorted(stored, key=lambda r: r.kafka_offset)
                    if r.kafka_partition == partition]
        assert versions == sorted(versions), f"partition {partition} went back to v1 after v2"
    champion = registry.champion(db_url)
    assert champion is not None and champion.version == "v3"  # the registry says v3, the consumer refused it
    assert "refused by consumer" in (champion.notes or "") and "SafetensorError" in (champion.refused_reason or "")
