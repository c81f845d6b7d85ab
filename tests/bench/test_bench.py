"""`finpulse bench` on a tiny configuration: every section is there and the numbers hang together.

No speed thresholds (the machine is shared): the benchmark's numbers are checked for sanity and consistency only.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_reports_every_section_with_consistent_numbers(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env_db = f"sqlite:///{tmp_path / 'unused.db'}"  # the bench writes to fresh per-phase files, never here
    command = [sys.executable, "-m", "monitor.app", "bench", "--model", str(tiny_model_dir), "--messages", "200",
               "--naive-messages", "40", "--e2e-rounds", "2", "--model-texts", "64", "--rounds", "1",
               "--latency-seconds", "3", "--batch-size", "16", "--workdir", str(tmp_path / "work"), "--out", str(out)]
    env = {**_env(), "FINPULSE_DATABASE_URL": env_db, "FINPULSE_CONSUMER_PROCESSES": "2"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "end to end" in done.stdout and "model only" in done.stdout
    report = json.loads(out.read_text())

    model, e2e = report["model_only"], report["end_to_end"]
    assert model["msgs_per_s"] > 0 and len(model["runs"]) == 3 and all(r > 0 for r in model["runs"])
    assert e2e["messages"] == 200 and len(e2e["rounds"]) == 2 and e2e["msgs_per_s"] > 0
    assert all(r["inserted"] == r["messages"] == 100 for r in e2e["rounds"])
    assert e2e["peak_rss_mib"] > 0 and e2e["torch_threads"] >= 1
    for phase in ("naive", "naive_consumer_threads"):
        assert report[phase]["messages"] == 40 and report[phase]["msgs_per_s"] > 0
        assert report[phase]["peak_rss_mib"] > 0
    ratios = report["ratios"]
    assert math.isclose(ratios["e2e_vs_model_only"], e2e["msgs_per_s"] / model["msgs_per_s"], rel_tol=0.01)
    # The naive baselines are compared with what `finpulse consume` runs as configured: here two processes.
    cores = len(os.sched_getaffinity(0))
    default, layouts = report["default_layout"], report["layouts"]["msgs_per_s"]
    assert default["processes"] == 2 and default["msgs_per_s"] == layouts["2x1"] > 0
    if cores > 1:
        assert set(layouts) == {f"1x{e2e['torch_threads']}", f"1x{cores}", f"{cores}x1", "2x1"}
        assert all(rate > 0 for rate in layouts.values()) and report["layouts"]["best"] in layouts
    for phase in ("naive", "naive_consumer_threads"):
        assert math.isclose(ratios[f"e2e_vs_{phase}"], default["msgs_per_s"] / report[phase]["msgs_per_s"],
                            rel_tol=0.01)

    latency = report["latency"]
    assert math.isclose(latency["offered_msgs_per_s"], default["msgs_per_s"] / 2, rel_tol=0.01)
    assert latency["processes"] == 2 and latency["messages"] >= 20
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]

    precision = report["precision_comparison"]
    assert set(precision["msgs_per_s"]) >= {"fp32", "bf16"} and all(v > 0 for v in precision["msgs_per_s"].values())
    assert math.isclose(precision["bf16_vs_fp32"], precision["msgs_per_s"]["bf16"] / precision["msgs_per_s"]["fp32"],
                        rel_tol=0.01)
    assert not list((tmp_path / "work").glob("*.db")), "scratch databases are removed unless --keep"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FINPULSE_")}


def test_scoring_threads_leave_a_core_free_unless_omp_num_threads_says_otherwise() -> None:
    code = ("import torch; from finetune.device import configure_threads; from monitor.core.cpus import usable_cores; "
            "n = configure_threads(); print(n, torch.get_num_threads(), usable_cores())")
    env = {k: v for k, v in _env().items() if k != "OMP_NUM_THREADS"}
    chosen, actual, cores = map(int, subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                                                    capture_output=True, text=True).stdout.split())
    assert chosen == actual == max(1, cores - 1)
    # torch caps OMP_NUM_THREADS at the core count; all cores differs from the default wherever there are two
    kept = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "OMP_NUM_THREADS": str(cores)},
                          check=True, capture_output=True, text=True).stdout.split()
    assert kept[:2] == [str(cores), str(cores)]
    # Set after torch was imported (as `finpulse consume` may, for a lone process): still applied.
    late = ("import os, torch; torch.set_num_threads(2); os.environ['OMP_NUM_THREADS'] = '1'; "
            "from finetune.device import configure_threads; print(configure_threads(), torch.get_num_threads())")
    assert subprocess.run([sys.executable, "-c", late], cwd=REPO, env=env, check=True, capture_output=True,
                          text=True).stdout.split() == ["1", "1"]
