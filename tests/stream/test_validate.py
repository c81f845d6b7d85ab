"""Each way a record can be rejected, and that a good one passes."""

from __future__ import annotations

import json

import pytest

from monitor.stream.validate import Rejection, validate_value
from schemas.news import NewsIn
from tests.stream_helpers import encode, malformed, news

LIMIT = 4096


def test_valid_message_becomes_news() -> None:
    outcome = validate_value(encode(news(1, tickers=["$acme"])), LIMIT)
    assert isinstance(outcome, NewsIn)
    assert outcome.id == "news-1" and outcome.tickers == ["ACME"]


@pytest.mark.parametrize("case", range(10))
def test_each_malformed_kind_is_rejected_with_one_line(case: int) -> None:
    kind, value = malformed(case)
    outcome = validate_value(value, LIMIT)
    assert isinstance(outcome, Rejection)
    assert outcome.kind == kind
    assert outcome.detail and "\n" not in outcome.detail


def test_details_name_the_problem() -> None:
    def detail(value: bytes) -> str:
        outcome = validate_value(value, LIMIT)
        assert isinstance(outcome, Rejection)
        return outcome.detail

    good = news(1)
    assert detail(encode({k: v for k, v in good.items() if k != "headline"})) == "headline: Field required"
    assert detail(encode({**good, "published_at": "2024-03-01T09:30:00"})).startswith("published_at:")
    assert "tickers" in detail(encode({**good, "tickers": ["not a ticker"]}))
    assert "5000 bytes" in detail(b"x" * 5000)
    assert "list" in detail(json.dumps([good]).encode())
    two_problems = detail(encode({**good, "headline": "", "source": ""}))
    assert "(+1 more)" in two_problems
    assert "\n" not in detail(b"{\n\n broken")


def test_oversized_is_checked_before_parsing() -> None:
    outcome = validate_value(b"\xff" * (LIMIT + 1), LIMIT)
    assert isinstance(outcome, Rejection) and outcome.kind == "oversized"


@pytest.mark.parametrize("value", [None, b"", b"null", b"42", b'"text"', b"[" * 100_000, b"\x00", b"{}"])
def test_never_raises(value: bytes | None) -> None:
    assert isinstance(validate_value(value, 1 << 20), Rejection)
