"""Where features plug into the consumer's write path.

* A **batch hook** runs inside the sink's transaction with only the rows this batch newly inserted (risk
  signals update per-entity aggregates here, so a crash never counts a story twice or loses one).
* An **after-commit hook** runs once the transaction committed (alert evaluation, notifications). It is
  at-most-once per row: if the process dies between the commit and the hook, the re-read batch inserts nothing
  new and the hook is not called again for those rows.

The consumer asks :func:`batch_hooks` and :func:`after_commit_hooks` for its hooks at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitor.settings import Settings
from schemas.news import News

log = logging.getLogger(__name__)

BatchHook = Callable[[Session, Sequence[News]], None]
AfterCommitHook = Callable[[Sequence[News]], None]


def batch_hooks(settings: Settings, engine: Engine) -> list[BatchHook]:
    """Hooks called in the sink's transaction, in this order."""
    from monitor.signals import signals_batch_hook

    return [signals_batch_hook(settings)]  # near-duplicate marking + per-entity signal buckets


def after_commit_hooks(settings: Settings, engine: Engine) -> list[AfterCommitHook]:
    """Hooks called after the sink's transaction committed, in this order."""
    from monitor.alert_eval import AlertEvaluator
    from monitor.notify import Notifier

    notifier = Notifier(engine, settings)
    notifier.resume()  # deliver what a previous run left in the outbox
    return [AlertEvaluator(settings, engine, notifier)]


def close_hooks(hooks: Sequence[object]) -> None:
    """Release what hooks hold (the notifier thread): call once the consumer stops."""
    for hook in hooks:
        close = getattr(hook, "close", None)
        if callable(close):
            close()
