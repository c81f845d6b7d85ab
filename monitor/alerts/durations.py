"""The duration syntax of alert rules (``90``, ``90s``, ``15m``, ``4h``, ``1d``, ``1w``), read and written.

The CLI (``finpulse alerts --window 15m``) and the dashboard's rule editor share it, so a rule shown in one reads
back the same in the other.
"""

from __future__ import annotations

import re

from monitor.core.errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str, field: str) -> int:
    """``90``, ``90s``, ``15m``, ``4h``, ``1d``, ``1w`` -> seconds; a ConfigError names the rule field."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ConfigError(f"invalid alert rule: {field}: expected seconds or a duration like 90s, 15m, 4h, 1d "
                          f"(found {text!r})")
    return round(float(match.group(1)) * _UNIT_S[match.group(2)])


def duration_text(seconds: int) -> str:
    """900 -> ``15m``: the largest whole unit, which :func:`parse_duration` reads back."""
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds else "0"
