"""The alert state machine, as in Grafana and Alertmanager: normal -> pending -> firing -> resolved.

Pure: no database, no clock. :func:`step` takes the rule, the current state, the metric value and the time, and
returns the next state plus at most one notification event. The guarantees the tests check:

* ``firing`` is emitted only on entering the firing state, ``resolved`` only on leaving it, so two ``firing``
  events always have a ``resolved`` between them;
* a ``reminder`` is emitted while firing only once ``repeat_interval_s`` has passed since the last notification;
* the condition must hold for ``pending_s`` before firing (pending resets as soon as it stops holding);
* a firing alert resolves only when the value is back past the *recovery* threshold (hysteresis), or when the
  window has had no data to judge (fewer stories than the rule's minimum) for ``no_data_s`` (the rule's
  ``no_data_windows`` windows), so a sparse entity does not flap between firing and resolved.

Time is the evaluator's event time (:mod:`monitor.alerts.clock`), for windows and durations alike.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

log = logging.getLogger(__name__)

State = Literal["normal", "pending", "firing", "resolved"]
Event = Literal["firing", "resolved", "reminder"]
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class RuleSpec:
    comparator: str
    threshold: float
    recovery_threshold: float | None = None  # None: same as threshold (no hysteresis)
    pending_s: float = 0.0
    repeat_interval_s: float = 0.0  # 0: never remind
    no_data_s: float = 0.0  # how long a firing alert may lack data before it resolves; 0: at once

    def breached(self, value: float) -> bool:
        return _COMPARE[self.comparator](value, self.threshold)

    def recovered(self, value: float) -> bool:
        """Back on the safe side of the recovery threshold (for '<': value >= recovery; for '<=': value > it)."""
        recovery = self.threshold if self.recovery_threshold is None else self.recovery_threshold
        return not _COMPARE[self.comparator](value, recovery)


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: State = "normal"
    since: datetime | None = None  # when the current state was entered
    last_notified_at: datetime | None = None  # last firing or reminder notification
    no_data_since: datetime | None = None  # while firing: since when the window has lacked data


def step(rule: RuleSpec, snapshot: Snapshot, value: float | None, now: datetime) -> tuple[Snapshot, Event | None]:
    """The next state and the notification to send (if any) for one evaluation."""
    if snapshot.state == "firing":
        if value is None:
            gap_since = snapshot.no_data_since or now
            if now - gap_since >= timedelta(seconds=rule.no_data_s):
                return Snapshot("resolved", now, snapshot.last_notified_at), "resolved"
            snapshot = replace(snapshot, no_data_since=gap_since)
        elif rule.recovered(value):
            return Snapshot("resolved", now, snapshot.last_notified_at), "resolved"
        else:
            snapshot = replace(snapshot, no_data_since=None)
        last = snapshot.last_notified_at or snapshot.since or now
        if rule.repeat_interval_s > 0 and now - last >= timedelta(seconds=rule.repeat_interval_s):
            return replace(snapshot, last_notified_at=now), "reminder"
        return snapshot, None
    # normal, resolved and pending all start from "is the condition true now?"
    if value is None or not rule.breached(value):
        if snapshot.state == "pending":
            return Snapshot("normal", now, snapshot.last_notified_at), None
        return snapshot, None
    pending_since = snapshot.since if snapshot.state == "pending" and snapshot.since is not None else now
    if now - pending_since >= timedelta(seconds=rule.pending_s):
        return Snapshot("firing", now, now), "firing"
    if snapshot.state == "pending":
        return snapshot, None
    return Snapshot("pending", now, snapshot.last_notified_at), None
