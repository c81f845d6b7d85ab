"""`finpulse bench takeover` and `finpulse bench sqlite` in their smallest configurations: they run, print their
table, ratio and host lines, and exit 0. No timing assertions (the machine is shared): speed is what the commands
print, side by side in one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINPULSE_")}
    return {**env, "FINPULSE_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}"}


def _bench(tmp_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.app", "bench", *args], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def test_sqlite_bench_prints_both_pragmas_the_ratio_and_the_host(tmp_path: Path) -> None:
    out = tmp_path / "sqlite.json"
    done = _bench(tmp_path, "sqlite", "--batches", "4", "--batch-rows", "8", "--rounds", "2", "--workdir",
                  str(tmp_path / "work"), "--out", str(out), timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = done.stdout
    assert "NORMAL (in force: NORMAL)" in text and "FULL (in force: FULL)" in text  # the listener took effect
    assert "FULL / NORMAL rows/s:" in text and "usable cores, flags " in text
    report = json.loads(out.read_text())
    assert report["results"]["FULL"]["pragma"] == "FULL" and report["results"]["NORMAL"]["pragma"] == "NORMAL"
    assert all(len(r["rounds"]) == 2 and r["rows_per_s"] > 0 for r in report["results"].values())
    assert all(run["rows"] == 32 for r in report["results"].values() for run in r["rounds"])
    assert not list((tmp_path / "work").glob("*.db*")), "scratch databases are removed unless --keep"


@pytest.mark.slow
def test_takeover_bench_kills_restarts_and_prints_the_table_and_ratio(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "takeover.json"
    done = _bench(tmp_path, "takeover", "--model", str(tiny_model_dir), "--scenarios", "restart", "--arms",
                  "dynamic,static", "--session-ms", "3000", "--rate", "20", "--workdir", str(tmp_path / "work"),
                  "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = done.stdout
    assert "back up  + rejoin  = first row  all partitions" in text and "usable cores, flags " in text
    assert "restart   dynamic, session 3 s" in text and "restart   static, session 3 s" in text
    assert "restart: (dynamic, session 3 s) / (static, session 3 s): first row " in text
    for arm in json.loads(out.read_text())["results"]["restart"].values():
        (trial,) = arm["trials"]
        assert trial["partitions"] == [0, 1, 2, 3]
        assert trial["back_up_s"] is not None and 0 < trial["back_up_s"] < trial["first_row_s"]
    logs = sorted(p.name for p in (tmp_path / "work").glob("*-m0.log"))
    assert len(logs) == 2  # one `finpulse consume` log per trial (the restart appends to it)


def test_options_of_another_benchmark_are_refused(tmp_path: Path) -> None:
    done = _bench(tmp_path, "sqlite", "--arms", "static", timeout=60)
    assert done.returncode == 2 and "--arms is not an option of `finpulse bench sqlite`" in done.stderr
    done = _bench(tmp_path, "takeover", "--arms", "dynamic,sticky", timeout=60)
    assert done.returncode == 2 and "sticky given" in done.stderr
