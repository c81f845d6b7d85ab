"""The human-readable table of ``finpulse bench`` (the JSON report carries the same numbers and more)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def _rate(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):8.1f}"


def table(report: dict[str, Any]) -> str:
    lines = [
        f"finpulse bench: {report['messages']} messages from {report['data']}",
        f"model {report['model_version']} ({report['model_origin']}) on {report['device']}, "
        f"{report.get('engine', 'torch')} {report['precision']}, "
        f"torch threads {report['torch_threads']}, micro-batch {report['batch_max_messages']} "
        f"(forward passes of {report['score_batch_size']}), database {report['database']}",
        f"CPU {report['cpu']}, {report['cores']} usable cores, flags {','.join(report.get('cpu_flags', [])) or '-'}",
        "",
        f"{'phase':<34}{'msgs/s':>9}  notes",
    ]
    model = report["model_only"]
    runs = ", ".join(f"{rate:.0f}" for rate in model["runs"])
    lines.append(f"{'model only (ceiling)':<34}{_rate(model['msgs_per_s'])}  {model['texts']} texts x "
                 f"{len(model['runs'])} runs around the end-to-end rounds ({runs})")
    e2e = report["end_to_end"]
    per_round = ", ".join(f"{r['msgs_per_s']:.0f}" for r in e2e["rounds"])
    lines.append(f"{'end to end (Kafka -> DB -> signals)':<34}{_rate(e2e['msgs_per_s'])}  {e2e['messages']} messages "
                 f"in {len(e2e['rounds'])} rounds ({per_round}), {e2e['batches']} batches of {e2e['mean_batch']}, "
                 f"peak RSS {e2e['peak_rss_mib']:.0f} MiB")
    layouts = report.get("layouts")
    if layouts:
        for name, rate in layouts["msgs_per_s"].items():
            processes, threads = name.split("x")
            label = f"  {processes} process(es) x {threads} thread(s)"
            lines.append(f"{label:<34}{_rate(rate)}  end to end{' (best)' if name == layouts['best'] else ''}")
    labels = {"naive": "naive, tutorial (torch threads)", "naive_consumer_threads": "naive, consumer's threads"}
    for phase, label in labels.items():
        naive = report.get(phase)
        if naive:
            lines.append(f"{label:<34}{_rate(naive['msgs_per_s'])}  {naive['messages']} messages, torch threads "
                         f"{naive['torch_threads']}, peak RSS {naive['peak_rss_mib']:.0f} MiB")
    ratios = report["ratios"]
    text = f"end-to-end / model-only {ratios['e2e_vs_model_only']:.1%} (one process, one scoring thread)"
    default = report.get("default_layout") or {"processes": 1, "msgs_per_s": e2e["msgs_per_s"]}
    layout = f"{default['processes']} process(es)" + (f" x {default['threads']} scoring thread(s)"
                                                       if default.get("threads") else "")
    lines += ["", text, f"finpulse consume's default ({layout}): {default['msgs_per_s']:.1f} msgs/s end to end"]
    text = ""
    for phase, label in labels.items():
        if ratios.get(f"e2e_vs_{phase}") is not None:
            text += f"{'; ' if text else ''}that / {label} {ratios[f'e2e_vs_{phase}']:.1f}x"
    if text:
        lines.append(text)
    lat = report.get("latency")
    if lat:
        lines.append(f"publish -> DB commit at {lat['offered_msgs_per_s']:.1f} msg/s ({lat['messages']} messages, "
                     f"{lat.get('processes', 1)} process(es)): "
                     f"p50 {lat['p50_ms']:.0f} ms, p95 {lat['p95_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, "
                     f"max {lat['max_ms']:.0f} ms")
    rss = e2e.get("rss") or {}
    if rss.get("growth") is not None:
        lines.append(f"consumer RSS: first quarter {rss['first_quarter_mib']:.0f} MiB, last quarter "
                     f"{rss['last_quarter_mib']:.0f} MiB ({rss['growth']:+.1%})")
    precision = report.get("precision_comparison")
    if precision:
        rates = precision["msgs_per_s"]
        parts = [f"{name} {rate:.1f}" for name, rate in rates.items()]
        ratio_text = ", ".join(f"{k.removesuffix('_vs_fp32')} {v:.2f}x" for k, v in precision.items()
                               if k.endswith("_vs_fp32"))
        lines.append(f"model only by engine and precision (msgs/s): {', '.join(parts)}; vs torch fp32: "
                     f"{ratio_text}")
    quality = report.get("quality")
    if quality and "macro_f1" in quality:
        f1 = ", ".join(f"{k} {v:.4f}" for k, v in quality["macro_f1"].items())
        lines.append(f"TFNS valid sentiment macro-F1: {f1}")
    elif quality:
        lines.append(f"quality: skipped ({quality.get('skipped')})")
    lines.append(f"took {report['seconds']:.0f} s; logs in {report['workdir']}")
    return "\n".join(lines)
