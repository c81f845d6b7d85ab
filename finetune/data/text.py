"""The ``text`` source: unlabelled in-domain text (tweets, headlines) that trains only through distillation.

``--data 'text=FILE?column=text&max_rows=20000&seed=0&lang=en'`` reads one text column of a CSV file (or one key of
a JSON lines file, by its ``.jsonl``/``.json`` suffix). Its examples carry no label of any task, so the hard-label
loss never sees them; with ``--teacher DIR`` they train the student on the teacher's soft targets (the knowledge
distillation term), which is how a student learns the domain the labelled sets do not cover (the StockNet stream,
SEntFiN titles). Without a teacher they have nothing to teach, and training refuses them.

Options: ``column`` (default ``--text-column``), ``max_rows`` (a seeded sample of that many distinct texts; the
StockNet stream holds 120k rows, and every one costs a teacher forward pass), ``seed``, ``lang`` (keep rows whose
``lang`` column equals it, e.g. ``en``), and ``weight`` like every file source. Duplicate texts (one tweet is
listed once per ticker it mentions) are read once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from finetune.data.rows import csv_rows, jsonl_rows
from finetune.data.splits import normalize_text, subsample
from finetune.examples import Example
from monitor.core.errors import DataError

log = logging.getLogger(__name__)

SOURCE = "text"
OPTIONS = {"column", "max_rows", "seed", "lang", "weight"}


def _int_option(options: Mapping[str, str], key: str, default: int | None, path: Path) -> int | None:
    if key not in options:
        return default
    try:
        return int(options[key])
    except ValueError:
        raise DataError(f"--data text={path}: option {key}={options[key]!r}; expected a whole number") from None


def read_text(path: Path, options: Mapping[str, str], default_column: str = "text") -> list[Example]:
    """Distinct non-empty texts of one column, optionally filtered by language and sampled (seeded)."""
    column = options.get("column", default_column)
    lang = options.get("lang")
    max_rows = _int_option(options, "max_rows", None, path)
    seed = _int_option(options, "seed", 0, path) or 0
    if max_rows is not None and max_rows < 1:
        raise DataError(f"--data text={path}: option max_rows={max_rows}; expected a number >= 1")
    rows: Iterator[tuple[int, Mapping[str, Any]]] = (
        jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".json") else csv_rows(path))
    out: list[Example] = []
    seen: set[str] = set()
    duplicates = 0
    for number, row in rows:
        where = f"{path}:{number}"
        if column not in row:
            raise DataError(f"{where}: missing column {column!r} (found {sorted(row)}); set the source's column= "
                            "option, e.g. text=FILE?column=Title")
        if lang is not None:
            if "lang" not in row:
                raise DataError(f"{where}: option lang={lang} needs a 'lang' column (found {sorted(row)}); "
                                "drop the option")
            if str(row["lang"]).strip() != lang:
                continue
        text = str(row[column] or "").strip()
        key = normalize_text(text)
        if not key:
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        out.append(Example(text=text, source=SOURCE, where=where))
    if not out:
        raise DataError(f"{path}: no non-empty {column!r} texts" + (f" with lang={lang}" if lang else "")
                        + "; check the column= and lang= options")
    if duplicates:
        log.info("%s: %d duplicate texts read once", path, duplicates)
    return subsample(out, max_rows, seed)


def unlabelled_to_training(train: list[Example], valid: list[Example]) -> tuple[list[Example], list[Example]]:
    """Unlabelled texts that the validation split drew go back to training: they measure nothing there."""
    back = [example for example in valid if example.source == SOURCE]
    if not back:
        return train, valid
    return train + back, [example for example in valid if example.source != SOURCE]


def settle_unlabelled(examples: list[Example], teacher: str | None) -> list[Example]:
    """Unlabelled text needs a teacher (without one it would be steps that learn nothing: refused, with the fix);
    a text that a labelled source also has is dropped from the unlabelled ones (it gets soft targets as labelled)."""
    unlabelled = [example for example in examples if example.source == SOURCE]
    if not unlabelled:
        return examples
    if teacher is None:
        raise DataError("text= sources are unlabelled and train only through distillation; pass --teacher DIR "
                        "(a `finpulse train` output) or drop the text= sources")
    labelled = {normalize_text(example.text) for example in examples if example.source != SOURCE}
    kept = [e for e in examples if e.source != SOURCE or normalize_text(e.text) not in labelled]
    if len(kept) < len(examples):
        log.info("dropped %d unlabelled texts that labelled sources also have", len(examples) - len(kept))
    return kept
