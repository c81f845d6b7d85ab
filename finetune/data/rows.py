"""Row readers shared by the file sources: CSV with a header, and JSON lines (one object per line).

Both yield ``(line_number, row)`` so every error can name ``file:line``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from monitor.core.errors import DataError


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise DataError(f"{path}:1: empty file; expected a CSV header row naming the text and label columns")
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    empty = True
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        empty = False
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not valid JSON ({error.msg}); expected one object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        yield number, record
    if empty:
        raise DataError(f"{path}:1: empty file; expected JSON lines")
