"""`finpulse replay`: CSV and JSON lines land in the topic as NewsIn JSON, rightly keyed; bad rows name file:line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from monitor.core.errors import DataError
from monitor.core.settings import load_settings
from monitor.stream.broker import EmbeddedBroker
from monitor.stream.news_file import ColumnMap
from monitor.stream.replay import replay
from schemas.news import NewsIn
from tests.stream_helpers import REPO, read_topic

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
STOCKNET = SHARED_DATA / "stocknet_stream" / "stocknet_tweets_stream.csv"

CSV = """created_at_utc,ticker,tweet_id,text,lang,source_file_date
2014-01-02T10:00:00Z,AAPL,1001,$AAPL and $GOOG both up this morning,en,2014-01-02
2014-01-02T10:00:00Z,FB,1002,"Facebook, again",en,2014-01-02
2014-01-02T10:00:00Z,GOOG,1001,$AAPL and $GOOG both up this morning,en,2014-01-02
2014-01-02T10:05:00Z,MSFT,1003,Microsoft cloud revenue grows,und,2014-01-02
"""


def messages(broker: EmbeddedBroker, topic: str, expected: int) -> list[tuple[bytes, dict[str, Any]]]:
    return [(r.key, json.loads(r.value)) for r in read_topic(broker.bootstrap, topic, expected)]


def test_csv_is_published_keyed_by_ticker_with_repeated_ids_merged(
    broker: EmbeddedBroker, topics: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "tweets.csv"
    path.write_text(CSV)
    settings = load_settings(kafka_bootstrap=broker.bootstrap, kafka_topic=topics[0])
    result = replay(path, settings, rate=100, progress=False)
    assert (result.sent, result.merged, result.bad) == (3, 1, 0)
    got = {value["id"]: (key, value) for key, value in messages(broker, topics[0], 3)}
    assert sorted(got) == ["1001", "1002", "1003"]
    key, value = got["1001"]
    assert key == b"AAPL" and value["tickers"] == ["AAPL", "GOOG"]  # one message, both tickers
    assert value["source"] == "tweets" and value["language"] == "en"
    assert value["published_at"].startswith("2014-01-02T10:00:00")
    assert got["1002"][1]["headline"] == "Facebook, again"
    for _, value in got.values():
        NewsIn.model_validate(value)  # what the consumer will accept


def test_jsonl_corpus_drops_label_fields_and_restamps(
    broker: EmbeddedBroker, topics: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "train.jsonl"
    records = [
        {"id": "s1", "source": "finpulse-sample", "published_at": "2024-05-01T08:00:00Z",
         "headline": "ACME cuts guidance", "body": "Shares fell.", "tickers": ["ACME"], "sentiment": "negative",
         "entities": [{"start": 0, "end": 4, "type": "ORG", "sentiment": "negative"}]},
        {"id": "s2", "source": "finpulse-sample", "published_at": "2024-05-01T09:00:00+02:00",
         "headline": "Markets flat", "tickers": [], "sentiment": "neutral", "entities": []},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    settings = load_settings(kafka_bootstrap=broker.bootstrap, kafka_topic="unused")
    assert replay(path, settings, topic=topics[0], restamp=True, progress=False).sent == 2
    got = {value["id"]: (key, value) for key, value in messages(broker, topics[0], 2)}
    assert got["s1"][0] == b"ACME" and got["s2"][0] == b"s2"  # no ticker: keyed by id
    assert set(got["s1"][1]) == {"id", "source", "published_at", "headline", "body", "tickers"}
    assert not got["s1"][1]["published_at"].startswith("2024-05-01")  # restamped to now


def test_bad_row_names_file_and_line_or_is_counted(
    broker: EmbeddedBroker, topics: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "news.csv"
    path.write_text("id,title,published_at\na,Fine headline,2024-01-01T00:00:00Z\nb,,2024-01-01T00:00:00Z\n"
                    "c,No zone,2024-01-01T00:00:00\nd,Also fine,1704067200\n")
    settings = load_settings(kafka_bootstrap=broker.bootstrap, kafka_topic=topics[0])
    with pytest.raises(DataError, match=rf"{path}:3: no headline text") as caught:
        replay(path, settings, progress=False)
    assert "\n" not in str(caught.value) and "--skip-bad" in str(caught.value)
    result = replay(path, settings, skip_bad=True, progress=False, columns=ColumnMap(source_name="wire"))
    assert (result.sent, result.bad) == (2, 2) and result.first_bad and f"{path}:3" in result.first_bad
    with pytest.raises(DataError, match="no column 'headline_text' for headline"):
        replay(path, settings, progress=False, columns=ColumnMap(headline="headline_text"))
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"id": "x", "headline": "ok", "published_at": 1704067200}\nnot json\n')
    with pytest.raises(DataError, match=rf"{jsonl}:2: not JSON"):
        replay(jsonl, settings, progress=False)


def run_cli(broker: EmbeddedBroker, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINPULSE_")}
    env.update(FINPULSE_KAFKA_BOOTSTRAP=broker.bootstrap, FINPULSE_KAFKA_TOPIC=topic)
    return subprocess.run([sys.executable, "-m", "monitor.app", "replay", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_reports_bad_file_in_one_line(broker: EmbeddedBroker, topics: tuple[str, str], tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text('{"id": "a", "headline": "x", "published_at": "2024-01-01T00:00:00Z", "tickers": ["no way"]}\n')
    done = run_cli(broker, topics[0], str(path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {path}:1: tickers")


@pytest.mark.skipif(not STOCKNET.exists(), reason=f"shared data set absent: {STOCKNET} (see shared/README.md)")
def test_cli_replays_the_stocknet_stream(broker: EmbeddedBroker, topics: tuple[str, str]) -> None:
    done = run_cli(broker, topics[0], str(STOCKNET), "--limit", "100")
    assert done.returncode == 0, done.stderr
    assert "replayed 100 messages" in done.stdout
    got = messages(broker, topics[0], 100)
    assert len(got) == 100
    for key, value in got:
        news = NewsIn.model_validate(value)
        assert key.decode() == news.tickers[0] and news.source == "stocknet_tweets_stream"
