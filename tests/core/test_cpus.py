"""Usable cores under a cgroup CPU quota: a real cgroup on this host (v1 cpu controller or v2), and the parsing of
the /proc files of layouts this host does not have (a container's v2 mount, a v1 mount rooted in its cgroup)."""

from __future__ import annotations

import os
import subprocess  # nosec B404
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.core.cpus import cgroup_cpu_limit, usable_cores

V1_CPU = Path("/sys/fs/cgroup/cpu")
CHILD = ("from monitor.core.cpus import usable_cores; from monitor.cli.supervise import default_processes; "
         "print(usable_cores(), default_processes(0, 'cpu'))")


def _writable_cpu_hierarchy() -> Path | None:
    """A cgroup hierarchy with the cpu controller that this process may create children in (root on Linux)."""
    if os.geteuid() != 0 or not (V1_CPU / "cpu.cfs_quota_us").exists() or not os.access(V1_CPU, os.W_OK):
        return None
    return V1_CPU


@pytest.fixture
def cpu_cgroup() -> Iterator[Path]:
    hierarchy = _writable_cpu_hierarchy()
    if hierarchy is None:
        pytest.skip("needs root and a writable cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
    group = hierarchy / f"finpulse-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        yield group
    finally:
        group.rmdir()  # the child process has exited, so the group is empty


def _run_in(group: Path) -> tuple[int, int]:
    """usable_cores() and the consumer's default process count, in a fresh interpreter inside ``group``."""
    script = f"echo $$ > {group / 'cgroup.procs'} && exec {sys.executable} -c \"{CHILD}\""
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=120,  # nosec B603
                         check=True, cwd=Path(__file__).resolve().parents[2])
    cores, processes = out.stdout.split()
    return int(cores), int(processes)


def test_a_real_cgroup_quota_caps_the_cores_and_the_consumer_processes(cpu_cgroup: Path) -> None:
    visible = len(os.sched_getaffinity(0))
    assert _run_in(cpu_cgroup) == (visible, visible)  # no quota yet: the affinity mask decides
    (cpu_cgroup / "cpu.cfs_period_us").write_text("100000")
    (cpu_cgroup / "cpu.cfs_quota_us").write_text("100000")  # one core's worth, like `docker run --cpus 1`
    assert _run_in(cpu_cgroup) == (1, 1)
    (cpu_cgroup / "cpu.cfs_quota_us").write_text("150000")  # 1.5 cores: rounded down, never up
    assert _run_in(cpu_cgroup) == (1, 1)


def test_a_parents_quota_applies_to_a_child_cgroup(cpu_cgroup: Path) -> None:
    (cpu_cgroup / "cpu.cfs_quota_us").write_text("100000")
    child = cpu_cgroup / "worker"
    child.mkdir()
    try:
        assert _run_in(child)[0] == 1  # the child itself has no quota (-1); its parent's holds
    finally:
        child.rmdir()


def _fake_proc(tmp_path: Path, cgroup: str, mountinfo: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text(mountinfo.format(root=tmp_path))
    return proc


def test_cgroup_v2_cpu_max_on_the_path_and_its_ancestors(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    leaf = unified / "kubepods" / "pod1" / "app"
    leaf.mkdir(parents=True)
    (unified / "kubepods" / "cpu.max").write_text("max 100000\n")
    (unified / "kubepods" / "pod1" / "cpu.max").write_text("300000 100000\n")
    (leaf / "cpu.max").write_text("max 100000\n")
    proc = _fake_proc(tmp_path, "0::/kubepods/pod1/app\n",
                      "30 1 0:26 / {root}/unified rw,nosuid - cgroup2 cgroup2 rw\n")
    assert cgroup_cpu_limit(proc) == 3
    (leaf / "cpu.max").write_text("50000 100000\n")  # half a core rounds down to the minimum, one
    assert cgroup_cpu_limit(proc) == 1
    assert usable_cores(proc) == 1


def test_cgroup_v1_mount_rooted_in_the_containers_own_group(tmp_path: Path) -> None:
    # Docker without a cgroup namespace: /proc/self/cgroup names /docker/abc, and the mount's root is that group.
    mount = tmp_path / "cpu"
    mount.mkdir()
    (mount / "cpu.cfs_quota_us").write_text("200000\n")
    (mount / "cpu.cfs_period_us").write_text("100000\n")
    proc = _fake_proc(tmp_path, "5:cpuacct,cpu:/docker/abc\n3:memory:/docker/abc\n",
                      "40 30 0:35 /docker/abc {root}/cpu rw - cgroup cgroup rw,cpuacct,cpu\n")
    assert cgroup_cpu_limit(proc) == 2


def test_no_quota_or_unreadable_cgroups_mean_no_cap(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cpu.max").write_text("max 100000\n")
    proc = _fake_proc(tmp_path, "0::/\n", "30 1 0:26 / {root}/unified rw - cgroup2 cgroup2 rw\n")
    assert cgroup_cpu_limit(proc) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None
    assert usable_cores(tmp_path / "absent") == len(os.sched_getaffinity(0))
