"""The data of a retraining run: the gold split of the labels, the new labels, the replay sample.

* **Gold set.** Every label is assigned once, on first sight, to ``gold`` or ``train`` (``labelled_news.split``)
  by a hash of its normalized text (:func:`finetune.data.sources.stable_fraction`), so the assignment does not depend on
  order or on which process does it, and a near-duplicate of an assigned text joins the same side. Gold labels
  are never trained on, by any version: they are the fixed yardstick on which champion and candidate are compared.
* **New labels** are those with ``id > champion.trained_until_label_id``. Their ``train`` part is trained on;
  their ``gold`` part is the "new labels" evaluation (the newest data, which neither model has seen).
* **Replay.** ``retrain_replay_samples`` earlier examples (older ``train`` labels and the bundled sample corpus),
  a seeded sample, are mixed in so that the model does not forget what it knew.
* **Whose labels.** Only labels by an ``analyst`` or ``admin`` account (``labelled_news.labeller_role``) are
  trained on or used as gold (:func:`used_for_training`); a label with no role (NULL) was made before accounts
  existed and is kept. A viewer's label (which the dashboard refuses anyway) is ignored.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from finetune.data.entities import entity_spans, read_finpulse
from finetune.data.sample import SAMPLE_TRAIN
from finetune.data.splits import normalize_text, stable_fraction
from finetune.examples import Example, normalize_sentiment
from monitor.core.db import session_scope
from schemas.registry import LabelledNews

log = logging.getLogger(__name__)

GOLD, TRAIN = "gold", "train"
SPLIT_SEED = 0  # fixed for ever: changing it would move labels between the gold and the training side
TRAINING_ROLES = ("analyst", "admin")


def used_for_training() -> ColumnElement[bool]:
    """The labels retraining uses: by an analyst or admin, or from before accounts existed (no role)."""
    return or_(col(LabelledNews.labeller_role).is_(None), col(LabelledNews.labeller_role).in_(TRAINING_ROLES))


@dataclass
class Labelled:
    id: int
    split: str
    example: Example


def assign_splits(engine: Engine, gold_fraction: float) -> int:
    """Give every label without a split its side; returns how many were assigned now."""
    with session_scope(engine) as session:
        rows = session.exec(select(LabelledNews.id, LabelledNews.text, LabelledNews.split)
                            .order_by(col(LabelledNews.id))).all()
        known = {normalize_text(text): split for _, text, split in rows if split in (GOLD, TRAIN)}
        assigned: dict[str, list[int]] = {GOLD: [], TRAIN: []}
        for row_id, text, split in rows:
            if split in (GOLD, TRAIN):
                continue
            key = normalize_text(text)
            side = known.get(key) or (GOLD if stable_fraction(key, SPLIT_SEED) < gold_fraction else TRAIN)
            known[key] = side
            assigned[side].append(int(row_id or 0))
        for side, ids in assigned.items():
            if ids:
                session.execute(update(LabelledNews).where(col(LabelledNews.id).in_(ids)).values(split=side)
                                .execution_options(synchronize_session=False))
    count = sum(len(ids) for ids in assigned.values())
    if count:
        log.info("assigned %d new labels: %d gold, %d train", count, len(assigned[GOLD]), len(assigned[TRAIN]))
    return count


def _example(row: LabelledNews) -> Example:
    where = f"labelled_news id={row.id}"
    sentiment = None if row.sentiment is None else normalize_sentiment(row.sentiment, {}, where)
    spans = entity_spans(row.text, row.entities, where) if row.entities is not None else []
    return Example(row.text, sentiment, spans, ner=row.entities is not None, source="db", where=where)


def load_labels(engine: Engine, *, after_id: int | None = None, upto_id: int | None = None,
                split: str | None = None) -> list[Labelled]:
    """Labels used for training (oldest first) with ``after_id < id <= upto_id``, optionally of one split."""
    query = select(LabelledNews).where(used_for_training()).order_by(col(LabelledNews.id))
    if after_id is not None:
        query = query.where(col(LabelledNews.id) > after_id)
    if upto_id is not None:
        query = query.where(col(LabelledNews.id) <= upto_id)
    if split is not None:
        query = query.where(col(LabelledNews.split) == split)
    with Session(engine) as session:
        return [Labelled(int(row.id or 0), str(row.split), _example(row)) for row in session.exec(query)]


def replay_sample(engine: Engine, upto_id: int | None, size: int, seed: int, exclude: list[Example],
                  corpus: Path | None = SAMPLE_TRAIN) -> list[Example]:
    """``size`` seeded picks from the older training labels and the sample corpus, gold texts left out."""
    if size <= 0:
        return []
    pool = [item.example for item in load_labels(engine, upto_id=upto_id, split=TRAIN)] if upto_id else []
    if corpus is not None and corpus.exists():
        pool += read_finpulse(corpus)
    banned = {normalize_text(example.text) for example in exclude}
    pool = [example for example in pool if normalize_text(example.text) not in banned]
    if len(pool) <= size:
        return pool
    return random.Random(seed).sample(pool, size)  # nosec B311 # a seeded, reproducible replay sample, no secret


def write_finpulse(path: Path, examples: list[Example]) -> Path:
    """Examples as finpulse JSON lines (the trainer's ``finpulse=`` source)."""
    lines = []
    for example in examples:
        record: dict[str, object] = {"headline": example.text}
        if example.sentiment is not None:
            record["sentiment"] = example.sentiment
        if example.ner:  # an entities list marks a complete NER annotation; otherwise NER stays masked
            record["entities"] = [
                {"start": s.start, "end": s.end, "type": s.type or "OTHER", "sentiment": s.sentiment}
                for s in example.spans
            ]
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
