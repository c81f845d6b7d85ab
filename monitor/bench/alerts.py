"""``finpulse bench alerts``: how well the shipped rules catch known shocks, how fast, and how noisy they are.

The StockNet stream (a span of it, in event time) is scored once by the served model, then replayed through the
real sink, signal writer and alert evaluator into fresh SQLite databases:

* **live**: one story per batch, the evaluator ticking after each commit, as a quiet live stream behaves;
* **backlog**: batches of ``--batch`` stories, as a consumer catching up on a backlog behaves;
* **clean**: the stream without any injection (backlog), for the noise: alerts per 100 entities per day.

Each run holds the recommended rules and the previous demo rules side by side, so one table compares them. A
shock counts as detected when a rule of the set fires on its ticker within ``--horizon-min`` minutes of its start
(a rule of the matching direction: negative shocks by negative or volume rules, and so on).
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from finetune.device import cpu_flags
from monitor.alerts.defaults import PREVIOUS_DEMO_RULES, RECOMMENDED_RULES
from monitor.alerts.evaluator import AlertEvaluator
from monitor.alerts.rules import add_rule
from monitor.bench.alert_stream import Shock, burst_stories, draw_shocks, read_span, score_stream
from monitor.bench.data import find_source
from monitor.bench.model import resolve_model
from monitor.bench.run import cpu_model
from monitor.core import db
from monitor.core.accounts import Principal
from monitor.core.errors import DataError
from monitor.core.settings import Settings, load_settings
from monitor.signals.buckets import SignalWriter
from monitor.stream.sink import NewsSink
from schemas.alerts import Alert, AlertRuleIn
from schemas.news import News
from schemas.signals import entity_key

log = logging.getLogger(__name__)

BENCH = Principal("finpulse-bench", "admin", "cli")
SETS = {"recommended": RECOMMENDED_RULES, "previous": PREVIOUS_DEMO_RULES}
# Which rules may claim which shock: a volume rule catches any burst, a sentiment rule only its own direction.
CATCHES = {"negative": ("<", "volume"), "positive": (">", "volume"), "volume": ("volume",)}


@dataclass
class AlertBenchOptions:
    model: Path | None = None
    start: datetime = datetime(2014, 1, 1, tzinfo=UTC)
    days: float = 35.0
    shocks: int = 8  # of each kind
    burst: int = 8
    burst_min: float = 10.0
    batch: int = 64
    horizon_min: float = 60.0
    seed: int = 7
    workdir: Path | None = None
    data: Path | None = None
    modes: tuple[str, ...] = ("live", "backlog", "clean")
    settings: dict[str, Any] = field(default_factory=dict)


def bench_settings(options: AlertBenchOptions, database_url: str) -> Settings:
    return load_settings(database_url=database_url, notify_urls=[], notify_secrets_file=None,
                         alert_notify_max_age_s=1, **options.settings)


def replay(rows: list[News], rules: list[AlertRuleIn], settings: Settings, batch: int) -> tuple[list[Alert], float]:
    """Write ``rows`` through the real sink in batches of ``batch``, the evaluator ticking after each commit;
    returns every alert and the seconds it took."""
    db.upgrade(settings.database_url)
    engine = db.make_engine(settings.database_url)
    started = time.perf_counter()
    logging.getLogger("monitor.alerts.record").setLevel(logging.WARNING)  # thousands of alerts: the table says it
    try:
        with db.session_scope(engine) as session:
            for rule in rules:
                add_rule(session, rule, by=BENCH)
        evaluator = AlertEvaluator(settings, engine)
        sink = NewsSink(engine, signals=SignalWriter(settings), alerts=evaluator)
        for offset in range(0, len(rows), batch):
            sink.write([News(**row.model_dump()) for row in rows[offset:offset + batch]])
        evaluator.evaluate_until(rows[-1].published_at + timedelta(hours=3))  # let the last windows close
        evaluator.close()
        with Session(engine) as session:
            alerts = list(session.exec(select(Alert)).all())
    finally:
        engine.dispose()
    return alerts, time.perf_counter() - started


def _claims(alert: Alert, rule_set: str, shock: Shock, horizon: timedelta) -> bool:
    rule = next(r for r in SETS[rule_set] if r.name == alert.rule_name)
    kind = "volume" if rule.metric in ("volume_surprise", "volume_ratio", "count") else rule.comparator
    return (alert.entity == entity_key("TICKER", shock.ticker) and kind in CATCHES[shock.kind]
            and shock.start <= alert.started_at <= shock.start + horizon)


def detection(alerts: list[Alert], rule_set: str, shocks: list[Shock], horizon: timedelta,
              bucket_s: int) -> dict[str, Any]:
    names = {rule.name for rule in SETS[rule_set]}
    delays: list[float] = []
    per_kind: dict[str, list[int]] = {}
    for shock in shocks:
        fired = [a.started_at for a in alerts if a.rule_name in names and _claims(a, rule_set, shock, horizon)]
        hit = per_kind.setdefault(shock.kind, [0, 0])
        hit[1] += 1
        if fired:
            hit[0] += 1
            delays.append((min(fired) - shock.start).total_seconds() / bucket_s)
    found = sum(h for h, _ in per_kind.values())
    return {
        "detected": found, "shocks": len(shocks), "rate": found / len(shocks) if shocks else None,
        "by_kind": {kind: f"{h}/{n}" for kind, (h, n) in sorted(per_kind.items())},
        "median_buckets": statistics.median(delays) if delays else None,
        "p90_buckets": _quantile(delays, 0.9),
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def noise(alerts: list[Alert], rule_set: str, rows: list[News], days: float) -> dict[str, Any]:
    names = {rule.name for rule in SETS[rule_set]}
    fired = [a for a in alerts if a.rule_name in names]
    entities = {key for row in rows for key in (entity_key("TICKER", t) for t in row.tickers) if key}
    entities |= {key for row in rows for e in row.entities
                 if (key := entity_key(str(e.get("type", "")), str(e.get("text", ""))))}
    return {"alerts": len(fired), "days": round(days, 2), "entities": len(entities),
            "per_100_entities_per_day": round(100 * len(fired) / max(1, len(entities)) / days, 3),
            "by_rule": {name: sum(1 for a in fired if a.rule_name == name) for name in sorted(names)}}


def run_alert_bench(options: AlertBenchOptions) -> dict[str, Any]:
    source = find_source()
    path = options.data or (source.paths[0] if source.name == "stocknet" else None)
    if path is None:
        raise DataError("finpulse bench alerts needs the StockNet stream (../shared/data/stocknet_stream) or --data")
    settings = load_settings(**options.settings)
    stream = read_span(path, options.start, options.days)
    if len(stream) < 100:
        raise DataError(f"{path}: only {len(stream)} stories from {options.start:%Y-%m-%d} over {options.days:g} "
                        "days; choose another --start")
    kinds = {"negative": options.shocks, "positive": options.shocks, "volume": options.shocks}
    shocks = draw_shocks(stream, kinds, options.seed, options.burst, options.burst_min * 60,
                         settings.signal_baseline_days)
    injected = sorted(stream + [story for i, s in enumerate(shocks)
                                for story in burst_stories(s, options.burst, options.burst_min * 60, i)],
                      key=lambda news: (news.published_at, news.id))
    model_dir, how = resolve_model(options.model, settings)
    log.info("scoring %d stories with %s (%s)", len(injected), model_dir, how)
    scored = score_stream(injected, model_dir, settings)
    clean_ids = {news.id for news in stream}
    rules = [*RECOMMENDED_RULES, *PREVIOUS_DEMO_RULES]
    horizon = timedelta(minutes=options.horizon_min)
    workdir = Path(tempfile.mkdtemp(prefix="alerts-", dir=options.workdir)) if options.workdir else \
        Path(tempfile.mkdtemp(prefix="finpulse-bench-alerts-"))
    stream_info = {"path": str(path), "start": options.start.isoformat(), "days": options.days,
                   "stories": len(stream)}
    report: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "model": str(model_dir), "stream": stream_info,
        "shocks": [s.to_json() for s in shocks], "burst": {"stories": options.burst, "minutes": options.burst_min},
        "seed": options.seed, "bucket_s": settings.signal_bucket_s, "runs": {},
    }
    for mode in options.modes:
        rows = [r for r in scored if r.id in clean_ids] if mode == "clean" else scored
        url = f"sqlite:///{workdir / f'{mode}.db'}"
        alerts, seconds = replay(rows, rules, bench_settings(options, url), 1 if mode == "live" else options.batch)
        run: dict[str, Any] = {"seconds": round(seconds, 1), "alerts": len(alerts)}
        for name in SETS:
            run[name] = (noise(alerts, name, rows, options.days) if mode == "clean" else
                         detection(alerts, name, shocks, horizon, settings.signal_bucket_s))
        report["runs"][mode] = run
        log.info("%s: %s", mode, json.dumps(run))
    return report


def alert_table(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [f"finpulse bench alerts  ({report['stream']['stories']} StockNet stories from "
             f"{report['stream']['start'][:10]}, {report['stream']['days']:g} days; {len(report['shocks'])} shocks "
             f"of {report['burst']['stories']} stories in {report['burst']['minutes']:g} min; seed {report['seed']})",
             f"cpu: {report['cpu']} ({' '.join(report['cpu_flags'])}); model {report['model']}", "",
             f"{'rules':<12} {'live detected':>14} {'backlog detected':>17} {'median / p90 to fire':>22} "
             f"{'noise /100 ent/day':>19}"]
    for name in SETS:
        live, backlog = runs.get("live", {}).get(name, {}), runs.get("backlog", {}).get(name, {})
        clean = runs.get("clean", {}).get(name, {})
        timing = backlog or live
        lines.append(
            f"{name:<12} {_rate(live):>14} {_rate(backlog):>17} "
            f"{_buckets(timing.get('median_buckets'))} / {_buckets(timing.get('p90_buckets')):<9}".ljust(67)
            + f"{clean.get('per_100_entities_per_day', 'n/a'):>19}")
    lines.append("")
    for mode, run in runs.items():
        details = "; ".join(f"{name} {run[name].get('by_kind') or run[name].get('by_rule')}" for name in SETS)
        lines.append(f"{mode}: {run['seconds']} s, {run['alerts']} alerts; {details}")
    return "\n".join(lines)


def _rate(result: dict[str, Any]) -> str:
    return "n/a" if not result else f"{result['detected']}/{result['shocks']} ({100 * (result['rate'] or 0):.0f} %)"


def _buckets(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
