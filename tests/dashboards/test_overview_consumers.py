"""The Overview's consumer tiles: the lag of the monitor's group on whatever topic it reads (the demo's per-run
topic), each consumer's health state, and a stories-per-minute tile that says what it counts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, delete
from streamlit.testing.v1 import AppTest

from dashboards.queries import consumers, trends
from monitor.core import db
from monitor.core.settings import get_settings, load_settings
from schemas.consumers import ConsumerHeartbeat
from tests.dashboard_seed import OTHER_TOPIC, RECENT_PUBLISHED, RECONNECT_DETAIL, REFUSED_DETAIL, seed

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"


@pytest.fixture
def seeded_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'overview.db'}"
    db.upgrade(url)
    seed(url, load_settings(database_url=url))
    monkeypatch.setenv("FINPULSE_DATABASE_URL", url)
    monkeypatch.setenv("FINPULSE_STATS_INTERVAL_S", "600")  # consumers count as alive for 30 min
    monkeypatch.setenv("FINPULSE_DASHBOARD_AUTH_DISABLED", "true")
    monkeypatch.delenv("FINPULSE_KAFKA_TOPIC", raising=False)
    monkeypatch.delenv("FINPULSE_KAFKA_GROUP_ID", raising=False)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def overview() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def plain(markdown: str) -> str:
    """Text as shown: the page backslash-escapes consumer-supplied text (member names, error details)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def test_lag_tile_counts_the_groups_consumers_on_any_topic_and_says_which(seeded_url: str) -> None:
    at = overview()
    tiles = {m.label: (m.value, m.delta) for m in at.metric}
    # worker-a (42), worker-b (8) on the configured topic, demo:15 (5) on another: all of the monitor's group.
    assert tiles["Consumer lag"] == ("55", "3 consumers reporting")
    [caption] = [c.value for c in at.caption if "FINPULSE_KAFKA_TOPIC" in c.value]
    assert f"`{OTHER_TOPIC}`" in caption and "`finpulse.news`" in caption
    help_text = next(m for m in at.metric if m.label == "Consumer lag").proto.help
    assert OTHER_TOPIC in help_text and "finpulse-monitor" in help_text


def test_the_demos_dashboard_is_configured_with_its_topic_and_needs_no_caption(
    seeded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(seeded_url)
    with Session(engine) as session:  # only the demo's consumer runs, on its per-run topic
        session.exec(delete(ConsumerHeartbeat).where(col(ConsumerHeartbeat.topic) != OTHER_TOPIC))
        session.commit()
    engine.dispose()
    monkeypatch.setenv("FINPULSE_KAFKA_TOPIC", OTHER_TOPIC)  # what the demo gives its dashboard process
    get_settings.cache_clear()
    at = overview()
    assert {m.label: (m.value, m.delta) for m in at.metric}["Consumer lag"] == ("5", "1 consumer reporting")
    assert not [c.value for c in at.caption if "FINPULSE_KAFKA_TOPIC" in c.value]


def test_degraded_consumers_get_a_warning_line_with_the_detail(seeded_url: str) -> None:
    warnings = sorted(plain(w.value) for w in overview().warning)
    assert len(warnings) == 2, warnings  # worker-a is ok; the crashed and the other group's are not shown
    reconnecting, refused = warnings
    assert reconnecting.startswith(f"Consumer demo:15 (topic {OTHER_TOPIC}) lost the broker and is reconnecting")
    assert reconnecting.endswith(RECONNECT_DETAIL)
    assert refused.startswith("Consumer worker-b:12 (topic finpulse.news) refused the champion and serves v2")
    assert refused.endswith(REFUSED_DETAIL) and "(reported " in refused


def test_stories_per_minute_says_scoring_time_and_shows_the_published_rate(seeded_url: str) -> None:
    tile = next(m for m in overview().metric if m.label.startswith("Stories / min"))
    assert tile.label == "Stories / min (scored, last 5 min)"
    assert tile.value == "1.4"  # 7 scored in the last 5 minutes
    assert tile.delta == f"{RECENT_PUBLISHED / 5:.1f} / min published"
    assert "by the time the consumer scored them" in tile.proto.help
    assert "demo's burst of past news" in tile.proto.help


def test_consumer_queries_on_sqlite_and_postgresql(db_url: str) -> None:
    settings = load_settings(database_url=db_url)
    seed(db_url, settings)
    engine = db.make_engine(db_url)
    try:
        group = consumers.live_consumers(engine, 600, settings.kafka_group_id)
        assert [c.member for c in group.live] == ["worker-a:11", "worker-b:12", "demo:15"]  # by topic, member
        assert (group.lag, group.topics) == (55, ("finpulse.news", OTHER_TOPIC))
        assert {c.member: (c.status, c.detail) for c in group.not_ok} == {
            "worker-b:12": ("model_refused", REFUSED_DETAIL), "demo:15": ("broker_reconnecting", RECONNECT_DETAIL)}
        every_group = consumers.live_consumers(engine, 600)  # the other group's replay counts too
        assert (len(every_group.live), every_group.lag) == (4, 1054)
        wide = consumers.live_consumers(engine, 3 * 86_400, settings.kafka_group_id)  # counts the crashed one
        assert (len(wide.live), wide.lag) == (4, 1055)
        assert group.reported_at is not None and wide.reported_at is not None
        assert wide.reported_at < group.reported_at
        assert consumers.live_consumers(engine, 600, "nobody").lag is None
        tiles = trends.tiles(engine)
        assert tiles.published_5min == RECENT_PUBLISHED and tiles.published_per_minute == RECENT_PUBLISHED / 5
    finally:
        engine.dispose()
