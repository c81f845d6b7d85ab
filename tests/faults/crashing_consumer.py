"""``python -m tests.faults.crashing_consumer``: `finpulse consume` whose scorer kills the process on one text.

A stand-in for a message that takes the process down without an exception (the kernel's OOM killer during
tokenisation, a segfault in a native library): ``os._exit`` skips every ``except`` and ``finally``, as SIGKILL
does. Settings come from the environment, as for `finpulse consume`; the consumer stops after 3 idle seconds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from monitor.core.logs import setup_logging
from monitor.core.settings import load_settings
from monitor.scoring.model_source import ModelSource
from monitor.stream.consumer import NewsConsumer

KILL_TEXT = "KILL-PROCESS"
EXIT_CODE = 137  # what a SIGKILL-ed process reports


class KillingScorer:
    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def score(self, texts: Sequence[str]) -> Any:
        if any(KILL_TEXT in text for text in texts):
            os._exit(EXIT_CODE)
        return self.real.score(texts)


class KillingSource(ModelSource):
    def current(self) -> Any:
        return KillingScorer(super().current())


def main() -> int:
    settings = load_settings()
    setup_logging("INFO")
    consumer = NewsConsumer(settings, idle_exit_s=3.0, scorers=None)
    consumer.scorers = KillingSource(settings, consumer.engine)
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
