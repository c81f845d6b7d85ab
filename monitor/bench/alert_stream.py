"""The alert benchmark's stream: a span of the real StockNet tweets, with known shocks injected, scored once.

A shock is a burst of stories about one ticker at a chosen time: clearly negative, clearly positive, or neutral
(a pure volume burst). Shock tickers and times are drawn with a seeded generator from the tickers the span
mentions often enough to have a history, after a baseline's worth of stream. Each story in a burst is written
differently (a near-duplicate would count once, as it should).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.bench.model import make_scorer
from monitor.core.errors import DataError
from monitor.core.settings import Settings
from monitor.stream.batch import news_row
from monitor.stream.news_file import ColumnMap, merge_same_instant, read_news
from schemas.news import News, NewsIn

log = logging.getLogger(__name__)

_NEGATIVE = (
    "{t} shares plunge after the company cuts its full-year outlook",
    "{t} falls sharply as regulators open a fraud investigation",
    "{t} misses earnings estimates badly and suspends its dividend",
    "Analysts downgrade {t} to sell after a disastrous quarter",
    "{t} stock tumbles on news of a massive product recall",
    "{t} warns of heavy losses and announces thousands of layoffs",
    "{t} slumps after its chief executive resigns amid accounting scandal",
    "Investors dump {t} as the company defaults on a bond payment",
    "{t} crashes after the auditor raises going-concern doubts",
    "{t} sinks as a key customer cancels its biggest contract",
)
_POSITIVE = (
    "{t} shares soar after the company raises its full-year outlook",
    "{t} beats earnings estimates by a wide margin and lifts its dividend",
    "Analysts upgrade {t} to strong buy after a record quarter",
    "{t} jumps on news of a major new government contract",
    "{t} rallies as profit doubles and revenue hits a record high",
    "{t} surges after regulators approve its flagship product",
    "{t} climbs strongly on a multibillion-dollar buyback plan",
    "Investors cheer {t} as margins expand far beyond forecasts",
    "{t} hits an all-time high after blowout sales figures",
    "{t} gains sharply as it wins a landmark patent case",
)
_NEUTRAL = (
    "{t} to present at an industry conference next week",
    "{t} schedules its quarterly earnings call for Thursday",
    "{t} files its annual report with the SEC",
    "{t} names a new head of investor relations",
    "{t} annual shareholder meeting set for June",
    "{t} lists new series of notes on the exchange",
    "{t} updates its corporate governance guidelines",
    "{t} publishes its sustainability report",
    "{t} board meeting scheduled for later this month",
    "{t} completes previously announced office relocation",
)
TEMPLATES = {"negative": _NEGATIVE, "positive": _POSITIVE, "volume": _NEUTRAL}


@dataclass(frozen=True)
class Shock:
    kind: str  # negative | positive | volume
    ticker: str
    start: datetime

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "ticker": self.ticker, "start": self.start.isoformat()}


def read_span(path: Path, start: datetime, days: float) -> list[NewsIn]:
    end = start + timedelta(days=days)
    out = []
    for row in merge_same_instant(read_news(path, ColumnMap(), skip_bad=True)):
        if row.news.published_at >= end:
            break
        if row.news.published_at >= start:
            out.append(row.news)
    return out


def draw_shocks(stream: list[NewsIn], kinds: dict[str, int], seed: int, burst: int, burst_s: float,
                baseline_days: float) -> list[Shock]:
    """``kinds[kind]`` shocks of each kind, each on its own ticker (one the span mentions at least 10 times),
    after ``baseline_days`` of stream, at least 6 hours apart."""
    rng = random.Random(seed)  # nosec B311 # a reproducible benchmark draw, not a secret
    counts: dict[str, int] = {}
    for news in stream:
        for ticker in news.tickers:
            counts[ticker] = counts.get(ticker, 0) + 1
    tickers = sorted(t for t, n in counts.items() if n >= 10)
    first = stream[0].published_at + timedelta(days=baseline_days)
    span_s = (stream[-1].published_at - first).total_seconds() - burst_s
    total, free = sum(kinds.values()), max(0, int(span_s // 21_600))
    if total > free:
        raise DataError(f"{total} shocks need {total} six-hour slots after the {baseline_days:g}-day baseline; the "
                        f"span has {free}: replay more --days or inject fewer --shocks")
    slots = sorted(rng.sample(range(free), total))  # 6-hour slots: shocks never overlap
    order = [kind for kind, n in kinds.items() for _ in range(n)]
    rng.shuffle(order)
    if total > len(tickers):
        raise DataError(f"{total} shocks need as many tickers with a history; the span has {len(tickers)}")
    # One shock per ticker: a second burst of the same wording would rightly count as near-duplicates of the first.
    chosen = rng.sample(tickers, total)
    return [Shock(kind, ticker, first + timedelta(seconds=slot * 21_600 + rng.uniform(0, 18_000)))
            for kind, slot, ticker in zip(order, slots, chosen, strict=True)]


def burst_stories(shock: Shock, burst: int, burst_s: float, index: int) -> list[NewsIn]:
    templates = TEMPLATES[shock.kind]
    return [NewsIn(id=f"shock-{index}-{i}", source="bench-shock", headline=templates[i % len(templates)].format(
                       t=f"${shock.ticker}"),
                   published_at=shock.start + timedelta(seconds=burst_s * i / max(1, burst - 1)),
                   tickers=[shock.ticker])
            for i in range(burst)]


@dataclass
class _Record:
    """The Kafka coordinates :func:`news_row` reads, for stories that never went through a broker."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None = None
    value: bytes | None = None


def score_stream(stories: list[NewsIn], model_dir: Path, settings: Settings) -> list[News]:
    """Score every story once with the served model (all replays reuse the rows)."""
    scorer = make_scorer(model_dir, settings)
    rows: list[News] = []
    for start in range(0, len(stories), 64):
        chunk = stories[start:start + 64]
        predictions = scorer.score([news.model_text(settings.body_max_chars) for news in chunk])
        for offset, (news, prediction) in enumerate(zip(chunk, predictions, strict=True)):
            record = _Record("bench-alerts", 0, start + offset, int(news.published_at.timestamp() * 1000))
            rows.append(news_row(record, news, prediction, "bench"))
    return rows
