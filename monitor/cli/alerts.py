"""``finpulse alerts``: add, list, update, enable/disable, delete rules; silence, acknowledge, history.

Imports only typer at module level; the database and schemas load inside the commands. Every change is audited
with the OS user, or ``--actor``, as the actor (:func:`monitor.core.audit.cli_principal`).
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from monitor.alerts.durations import parse_duration
from monitor.cli.session import actor as actor_principal
from monitor.cli.session import cli_session

if TYPE_CHECKING:

    from schemas.alerts import AlertRule

log = logging.getLogger(__name__)

alerts_app = typer.Typer(help="Alert rules, silences, acknowledgements and alert history.", no_args_is_help=True)

Entity = Annotated[str | None, typer.Option(help="'*' (market), a ticker (AAPL), TYPE:name or TYPE:*.")]
# Kept in step with schemas.alerts.METRICS by a test; the schemas are not imported here (startup time).
Metric = Annotated[str | None, typer.Option(
    help="volume_surprise (-log10 p of the window's number of stories for this entity: 6 = p < 1e-6), "
         "sentiment_z (standard errors of the window's mean sentiment from the entity's normal), "
         "sentiment_shrunk (the window's mean sentiment pulled toward the entity's normal when stories are few); "
         "mean_sentiment, negative_share, count; legacy per-bucket zscore, volume_ratio, ewma_score.")]
Op = Annotated[str | None, typer.Option("--op", help="<, <=, >, >= (or lt, le, gt, ge).")]
Threshold = Annotated[float | None, typer.Option(help="Fires when METRIC OP THRESHOLD.")]
Recovery = Annotated[float | None, typer.Option(help="Resolves only past this value (hysteresis).")]
Window = Annotated[str | None, typer.Option(help="Span evaluated: 900, 15m, 1h.")]
Pending = Annotated[str | None, typer.Option(help="How long the condition must hold before firing: 0, 5m.")]
Repeat = Annotated[str | None, typer.Option(help="Reminder interval while firing (0 = never): 4h.")]
MinStories = Annotated[int | None, typer.Option(
    "--min-stories", help="Stories a window needs, else it is 'no data' and cannot fire (default 3).")]
NoDataWindows = Annotated[int | None, typer.Option(
    "--no-data-windows", help="Windows without enough stories before a firing alert resolves (default 2; 0 = at "
                              "once).")]
Severity = Annotated[str | None, typer.Option(help="info, warning or critical.")]
Channels = Annotated[list[str] | None, typer.Option("--channel", help="Notification channel name (repeatable).")]
Description = Annotated[str | None, typer.Option(help="Free text shown with the rule.")]
Actor = Annotated[str | None, typer.Option(help="Who acts, for the audit trail (default: the OS user).")]


def _changes(entity: str | None, metric: str | None, op: str | None, threshold: float | None,
             recovery: float | None, window: str | None, pending: str | None, repeat: str | None,
             min_stories: int | None, no_data_windows: int | None, severity: str | None,
             channels: list[str] | None, description: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"entity": entity, "metric": metric, "comparator": op, "threshold": threshold,
                           "recovery_threshold": recovery, "min_stories": min_stories,
                           "no_data_windows": no_data_windows, "severity": severity, "channels": channels,
                           "description": description}
    for field, text in (("window_s", window), ("pending_s", pending), ("repeat_interval_s", repeat)):
        out[field] = None if text is None else parse_duration(text, field)
    return {key: value for key, value in out.items() if value is not None}


def describe(rule: AlertRule) -> str:
    recovery = "" if rule.recovery_threshold is None else f" (recovers at {rule.recovery_threshold:g})"
    state = "enabled" if rule.enabled else "DISABLED"
    return (f"{rule.id:>4}  {rule.name}  [{state}, {rule.severity}]  {rule.entity}: {rule.metric} "
            f"{rule.comparator} {rule.threshold:g}{recovery} over {rule.window_s}s, pending {rule.pending_s}s, "
            f"min {rule.min_stories} stories, resolves after {rule.no_data_windows} no-data windows, "
            f"repeat {rule.repeat_interval_s}s, channels {','.join(rule.channels) or '-'}")


@alerts_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Unique rule name.")],
    entity: Entity = None, metric: Metric = None, op: Op = None, threshold: Threshold = None,
    recovery: Recovery = None, window: Window = None, pending: Pending = None, repeat: Repeat = None,
    min_stories: MinStories = None, no_data_windows: NoDataWindows = None,
    severity: Severity = None, channel: Channels = None, description: Description = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Store it disabled.")] = False,
    actor: Actor = None,
) -> None:
    """Add a rule, e.g. `finpulse alerts add aapl-neg --entity AAPL --metric sentiment_z --op lt
    --threshold -3 --recovery -1 --window 15m --min-stories 5 --channel ops`."""
    from monitor.alerts.rules import add_rule, validate_rule  # lazy: startup

    data = {"name": name, "enabled": not disabled,
            **_changes(entity, metric, op, threshold, recovery, window, pending, repeat, min_stories,
                       no_data_windows, severity, channel, description)}
    rule_in = validate_rule(data)
    with cli_session() as session:
        rule = add_rule(session, rule_in, by=actor_principal(actor))
        typer.echo(f"added {describe(rule)}")
        _warn_unconfigured(rule)


def _warn_unconfigured(rule: AlertRule) -> None:
    from monitor.alerts.notify import channel_urls  # lazy: startup
    from monitor.core.settings import get_settings  # lazy: startup

    for name in rule.channels:
        if not channel_urls(name, get_settings()):
            typer.echo(f"warning: channel {name!r} has no URL yet: set FINPULSE_NOTIFY_"
                       f"{re.sub(r'[^A-Za-z0-9]', '_', name).upper()} or add '{name}=URL' to the secrets file",
                       err=True)


@alerts_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the rules."""
    from monitor.alerts.rules import list_rules  # lazy: startup

    with cli_session() as session:
        rules = list_rules(session)
        for rule in rules:
            typer.echo(rule.model_dump_json(exclude={"created_at", "updated_at"}) if as_json else describe(rule))
    if not rules and not as_json:
        typer.echo("no alert rules; add one with `finpulse alerts add`")


@alerts_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Rule name or id.")],
    entity: Entity = None, metric: Metric = None, op: Op = None, threshold: Threshold = None,
    recovery: Recovery = None, window: Window = None, pending: Pending = None, repeat: Repeat = None,
    min_stories: MinStories = None, no_data_windows: NoDataWindows = None,
    severity: Severity = None, channel: Channels = None, description: Description = None,
    rename: Annotated[str | None, typer.Option(help="New rule name.")] = None,
    actor: Actor = None,
) -> None:
    """Change some fields of a rule; the result is validated as a whole."""
    from monitor.alerts.rules import update_rule  # lazy: startup

    changes = _changes(entity, metric, op, threshold, recovery, window, pending, repeat, min_stories,
                       no_data_windows, severity, channel, description)
    if rename is not None:
        changes["name"] = rename
    with cli_session() as session:
        rule = update_rule(session, name, changes, by=actor_principal(actor))
        typer.echo(f"updated {describe(rule)}")


def _set_enabled(name: str, enabled: bool, actor: str | None) -> None:
    from monitor.alerts.rules import update_rule  # lazy: startup

    with cli_session() as session:
        rule = update_rule(session, name, {"enabled": enabled}, by=actor_principal(actor))
        typer.echo(f"{'enabled' if enabled else 'disabled'} {rule.name}")


@alerts_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="Rule name or id.")], actor: Actor = None) -> None:
    """Stop evaluating a rule (its open alerts are closed without a notification)."""
    _set_enabled(name, False, actor)


@alerts_app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="Rule name or id.")], actor: Actor = None) -> None:
    """Evaluate a disabled rule again."""
    _set_enabled(name, True, actor)


@alerts_app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="Rule name or id.")], actor: Actor = None) -> None:
    """Delete a rule (its past alerts are kept)."""
    from monitor.alerts.rules import delete_rule  # lazy: startup

    with cli_session() as session:
        typer.echo(f"deleted {delete_rule(session, name, by=actor_principal(actor)).name}")


@alerts_app.command("silence")
def silence(
    rule: Annotated[str | None, typer.Option(help="Rule name or id to mute.")] = None,
    entity: Annotated[str | None, typer.Option(help="Entity to mute (any rule unless --rule).")] = None,
    for_: Annotated[str, typer.Option("--for", help="Duration: 30m, 2h, 1d.")] = "1h",
    reason: Annotated[str | None, typer.Option(help="Why (shown in the history).")] = None,
    actor: Actor = None,
) -> None:
    """Mute notifications for a rule and/or entity for a while; alerts are still recorded."""
    from monitor.alerts.rules import add_silence  # lazy: startup
    from schemas.types import utcnow  # lazy: startup

    until = utcnow() + timedelta(seconds=parse_duration(for_, "for"))
    with cli_session() as session:
        made = add_silence(session, until, rule=rule, entity=entity, reason=reason, by=actor_principal(actor))
        typer.echo(f"silence #{made.id} until {made.until.isoformat()}")


@alerts_app.command("ack")
def ack(
    alert_id: Annotated[int, typer.Argument(help="Alert id (see `finpulse alerts history`).")],
    actor: Actor = None,
) -> None:
    """Acknowledge an alert: reminders stop, the resolve notification still comes."""
    from monitor.alerts.rules import acknowledge  # lazy: startup

    with cli_session() as session:
        alert = acknowledge(session, alert_id, by=actor_principal(actor))
        typer.echo(f"acknowledged alert #{alert.id} ({alert.rule_name} on {alert.entity})")


@alerts_app.command("history")
def history(limit: Annotated[int, typer.Option(min=1, help="Alerts to show.")] = 20) -> None:
    """Recent alerts with their evidence headlines and notification deliveries."""
    from monitor.alerts.rules import recent_alerts, why_fired, why_resolved  # lazy: startup

    with cli_session() as session:
        alerts = recent_alerts(session, limit)
        if not alerts:
            typer.echo("no alerts yet")
        for alert, notes in alerts:
            ended = f" -> {alert.resolved_at.isoformat()}" if alert.resolved_at else ""
            acked = f", acked by {alert.acked_by}" if alert.acked_at else ""
            typer.echo(f"#{alert.id} {alert.status} {alert.severity} {alert.rule_name} on {alert.entity}: "
                       f"{alert.metric}={_num(alert.value)} (threshold {alert.threshold:g}) "
                       f"{alert.started_at.isoformat()}{ended}{acked}")
            typer.echo(f"    why: {why_fired(alert)}")
            resolved = why_resolved(alert)
            if resolved is not None:
                typer.echo(f"    resolved: {resolved}")
            for headline in alert.evidence.get("headlines", [])[:3]:
                typer.echo(f"    {headline['score']:+.2f} {headline['headline'][:100]}")
            for note in notes:
                error = f" ({note.last_error})" if note.last_error else ""
                typer.echo(f"    -> {note.kind} via {note.channel}: {note.status} after {note.attempts} "
                           f"attempt(s){error}")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

