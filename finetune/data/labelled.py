"""The ``db`` source: analysts' labels from the ``labelled_news`` table, as training examples.

The one data source that reads the database; it goes through :mod:`monitor.core.db` (engine, migrations check)
and the ``labelled_news`` table of :mod:`schemas.registry`.
"""

from __future__ import annotations

import logging

from sqlmodel import col, select

from finetune.data.entities import entity_spans
from finetune.examples import Example, normalize_sentiment
from monitor.core import db
from monitor.core.settings import get_settings
from schemas.registry import LabelledNews

log = logging.getLogger(__name__)


def read_labelled_news(url: str, since_id: int | None = None, split: str | None = None) -> list[Example]:
    """Analyst labels from ``labelled_news`` (``url='default'`` = FINPULSE_DATABASE_URL), oldest first.
    A row with ``entities`` set (even to []) is a complete NER annotation of its text."""
    if url == "default":
        url = get_settings().database_url
    engine = db.make_engine(url)
    try:
        db.require_migrated(engine)
        with db.session_scope(engine) as session:
            query = select(LabelledNews).order_by(col(LabelledNews.id))
            if since_id is not None:
                query = query.where(col(LabelledNews.id) > since_id)
            if split is not None:
                query = query.where(col(LabelledNews.split) == split)
            rows = list(session.exec(query))
    finally:
        engine.dispose()
    out = []
    for row in rows:
        where = f"labelled_news id={row.id}"
        sentiment = None if row.sentiment is None else normalize_sentiment(row.sentiment, {}, where)
        spans = entity_spans(row.text, row.entities, where) if row.entities is not None else []
        out.append(Example(row.text, sentiment, spans, ner=row.entities is not None, source="db", where=where))
    if not out:
        log.warning("labelled_news has no rows%s", f" after id {since_id}" if since_id is not None else "")
    return out
