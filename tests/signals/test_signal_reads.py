"""Signal reads: a batch's baselines and its late-data refresh come from one read of the signal table, and the
values still equal the from-scratch computation (tests.signals.test_signals holds the reference)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from monitor.core.db import make_engine, session_scope
from monitor.core.settings import Settings
from monitor.signals.buckets import record_batch
from schemas.news import News
from tests.signal_helpers import scored_news
from tests.signals.test_signals import T0, WIDTH, _assert_close, _random_stream, _reference, _settings, _signals, _store


def _reads_while_recording(url: str, batch: Sequence[News], settings: Settings) -> list[str]:
    """Store ``batch`` in one transaction; the SELECTs of entity_signal it ran."""
    engine = make_engine(url)
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "entity_signal" in statement:
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    with session_scope(engine) as session:
        session.add_all(batch)
        session.flush()
        record_batch(session, batch, settings)
    engine.dispose()
    return reads


def _assert_matches_reference(url: str, expected: dict[tuple[str, datetime], dict[str, Any]]) -> None:
    stored = _signals(url)
    assert set(stored) == set(expected)
    for key, want in expected.items():
        assert stored[key].count == want["count"], key
        _assert_close(stored[key].zscore, want["zscore"], f"{key} zscore")
        _assert_close(stored[key].volume_ratio, want["volume_ratio"], f"{key} volume ratio")
        _assert_close(stored[key].ewma_score, want["ewma"], f"{key} ewma")


def test_a_backlog_batch_reads_the_signal_table_once(db_url: str) -> None:
    """A consumer catching up covers hours of event time per batch: its baselines come from one read of the signal
    table, not one per bucket start, and still equal the from-scratch computation (the batch's own earlier buckets
    included)."""
    settings = _settings()
    rows = sorted(_random_stream(6, 300, duplicate_share=0), key=lambda r: (r.published_at, r.id))
    expected = _reference(rows, settings)
    _store(db_url, [rows[:100]], settings)
    backlog = rows[100:]
    starts = {int(r.published_at.timestamp()) // WIDTH for r in backlog}
    assert len(starts) >= 20
    reads = _reads_while_recording(db_url, backlog, settings)
    assert len(reads) == 1, f"{len(reads)} reads of entity_signal for {len(starts)} bucket starts"
    _assert_matches_reference(db_url, expected)
    assert sum(want["zscore"] is not None for want in expected.values()) >= 20


def test_late_stories_refresh_later_buckets_from_the_same_single_read(db_url: str) -> None:
    """Stories older than their entities' newest buckets change those buckets' baselines: the refresh works from the
    writer's one read (no query per late entity) and the stored values equal the from-scratch computation."""
    settings = _settings()
    rows = sorted(_random_stream(8, 240, duplicate_share=0), key=lambda r: (r.published_at, r.id))
    late, on_time = rows[60:120], rows[:60] + rows[120:]
    _store(db_url, [on_time[:90], on_time[90:]], settings)
    before = _signals(db_url)
    reads = _reads_while_recording(db_url, late, settings)
    assert len(reads) == 1, f"{len(reads)} reads of entity_signal for a batch of {len(late)} late stories"
    expected = _reference(rows, settings)
    _assert_matches_reference(db_url, expected)
    late_starts = {datetime.fromtimestamp(r.published_at.timestamp() // WIDTH * WIDTH, UTC) for r in late}
    refreshed = [key for key, row in _signals(db_url).items()
                 if key in before and key[1] > max(late_starts) and row.zscore != before[key].zscore]
    assert refreshed, "the late batch must change some later bucket's baseline, or this proves nothing"


def test_a_late_story_widens_the_read_of_its_own_entities_only(db_url: str) -> None:
    """Entities whose earliest touched buckets lie more than half a baseline apart are read separately, so one late
    story does not make every entity of the batch read from its bucket on; the values stay exact."""
    settings = _settings()  # a 72-minute baseline
    rows = sorted(_random_stream(9, 200, duplicate_share=0), key=lambda r: (r.published_at, r.id))
    _store(db_url, [rows], settings)
    late = scored_news("late", T0 + timedelta(minutes=30), "a late story about Apple", -0.8, tickers=["AAPL"])
    fresh = scored_news("fresh", T0 + timedelta(hours=3, minutes=10), "a new story about Microsoft", 0.5,
                        tickers=["MSFT"])
    reads = _reads_while_recording(db_url, [late, fresh], settings)
    assert len(reads) == 2, f"{len(reads)} reads: AAPL and the market (from 09:30) and MSFT (from 12:10) apart"
    _assert_matches_reference(db_url, _reference([*rows, late, fresh], settings))
