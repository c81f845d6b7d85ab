"""The alert state machine under random value sequences (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts.state import Event, RuleSpec, Snapshot, step

T0 = datetime(2024, 1, 1, tzinfo=UTC)

values = st.one_of(st.none(), st.floats(min_value=-1, max_value=1, allow_nan=False))
gaps = st.integers(min_value=0, max_value=900)
comparators = st.sampled_from(["<", "<=", ">", ">="])


@st.composite
def rules(draw: st.DrawFn) -> RuleSpec:
    comparator = draw(comparators)
    threshold = draw(st.floats(min_value=-0.8, max_value=0.8))
    band = draw(st.floats(min_value=0, max_value=0.5))
    recovery = draw(st.one_of(st.none(), st.just(threshold + band if comparator in ("<", "<=") else threshold - band)))
    return RuleSpec(comparator, threshold, recovery, pending_s=draw(st.sampled_from([0, 60, 300])),
                    repeat_interval_s=draw(st.sampled_from([0, 600, 3600])))


def run(rule: RuleSpec, sequence: list[tuple[int, float | None]]) -> list[tuple[datetime, float | None, Snapshot,
                                                                               Event | None]]:
    snapshot, now, out = Snapshot(), T0, []
    for gap, value in sequence:
        now += timedelta(seconds=gap)
        snapshot, event = step(rule, snapshot, value, now)
        out.append((now, value, snapshot, event))
    return out


@settings(max_examples=300, deadline=None)
@given(rules(), st.lists(st.tuples(gaps, values), max_size=60))
def test_no_notification_storm(rule: RuleSpec, sequence: list[tuple[int, float | None]]) -> None:
    last_notification: datetime | None = None
    open_alert = False
    for now, _value, snapshot, event in run(rule, sequence):
        if event == "firing":
            assert not open_alert, "two firing notifications without a resolve between them"
            open_alert, last_notification = True, now
        elif event == "reminder":
            assert open_alert and rule.repeat_interval_s > 0
            assert last_notification is not None
            assert now - last_notification >= timedelta(seconds=rule.repeat_interval_s)
            last_notification = now
        elif event == "resolved":
            assert open_alert, "resolved without firing"
            open_alert = False
        assert (snapshot.state == "firing") == open_alert


@settings(max_examples=300, deadline=None)
@given(rules(), st.lists(st.tuples(gaps, values), max_size=60))
def test_fires_only_after_the_condition_held_for_pending_s(rule: RuleSpec,
                                                           sequence: list[tuple[int, float | None]]) -> None:
    held_since: datetime | None = None
    for now, value, snapshot, event in run(rule, sequence):
        breached = value is not None and rule.breached(value)
        if snapshot.state in ("normal", "pending", "resolved") or event == "firing":
            held_since = (held_since or now) if breached else None
        if event == "firing":
            assert held_since is not None and now - held_since >= timedelta(seconds=rule.pending_s)
            held_since = None
        if event == "resolved":
            # Resolution needs the value past the recovery threshold, or no data at all.
            assert value is None or rule.recovered(value)


@settings(max_examples=200, deadline=None)
@given(rules(), st.lists(st.tuples(gaps, st.floats(min_value=-1, max_value=1)), max_size=40))
def test_hysteresis_band_keeps_firing(rule: RuleSpec, sequence: list[tuple[int, float]]) -> None:
    """While firing, values between threshold and recovery threshold neither resolve nor re-fire."""
    for now, value, snapshot, event in run(rule, sequence):
        if event is None and snapshot.state == "firing" and value is not None:
            assert not rule.recovered(value)
        if event == "resolved":
            assert value is not None and rule.recovered(value)
        del now


def test_a_worked_example() -> None:
    rule = RuleSpec("<", -0.3, recovery_threshold=-0.1, pending_s=60, repeat_interval_s=600)
    events = [e for *_, e in run(rule, [(0, -0.5), (30, -0.5), (40, -0.5), (60, -0.2), (600, -0.2), (10, -0.15),
                                        (10, -0.05), (10, -0.5)])]
    assert events == [None, None, "firing", None, "reminder", None, "resolved", None]
    # Pending resets when the condition stops holding before pending_s.
    assert [e for *_, e in run(rule, [(0, -0.5), (50, 0.0), (20, -0.5), (30, -0.5)])] == [None] * 4
