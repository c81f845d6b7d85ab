"""Text helpers of the dashboard: UTC times, ages, and safe Markdown for untrusted news text."""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from schemas.types import utcnow

log = logging.getLogger(__name__)

SENTIMENT_COLORS = {"negative": "red", "neutral": "gray", "positive": "green"}
_ESCAPES = {ord(char): "\\" + char for char in string.punctuation}


def utc(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_utc(text: object) -> str:
    """An ISO timestamp from JSON evidence as ``YYYY-MM-DD HH:MM:SS UTC`` (as it is, if it does not parse)."""
    try:
        return utc(datetime.fromisoformat(str(text)).astimezone(UTC))
    except ValueError:
        return str(text)


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``"42s ago"``, ``"5m ago"``, ``"3h ago"``, ``"2d ago"``; ``"never"`` for None."""
    if moment is None:
        return "never"
    seconds = max(0.0, ((now or utcnow()) - moment).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def escape_markdown(text: str) -> str:
    """Backslash-escape every ASCII punctuation character (CommonMark allows it for all of them).

    News text is untrusted: unescaped, ``![x](http://...)`` would make every viewer's browser fetch a URL, and
    Streamlit's ``:color[...]``/``:material/...:`` directives or ``$...$`` maths would change the rendering.
    """
    # Newlines would start new Markdown blocks (headings, lists); news text is shown as one paragraph.
    return text.translate(_ESCAPES).replace("\r", " ").replace("\n", " ")


def highlight(text: str, entities: Iterable[dict[str, Any]]) -> str:
    """``text`` as Markdown with each entity span on a background coloured by its sentiment.

    Spans outside the text, overlapping an earlier span, or with non-integer offsets are skipped (the text
    shown may be a prefix of the scored text, e.g. the headline of headline + body).
    """
    spans = []
    for entity in entities:
        start, end = entity.get("start"), entity.get("end")
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text):
            spans.append((start, end, SENTIMENT_COLORS.get(str(entity.get("sentiment")), "blue")))
    out, cursor = [], 0
    for start, end, color in sorted(spans):
        if start < cursor:
            continue
        out.append(escape_markdown(text[cursor:start]))
        out.append(f":{color}-background[{escape_markdown(text[start:end])}]")
        cursor = end
    out.append(escape_markdown(text[cursor:]))
    return "".join(out)


def signed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"
