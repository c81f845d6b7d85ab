"""How many CPU cores this process may really use: the affinity mask, capped by a cgroup CPU quota.

A container started with ``docker run --cpus 2`` or a Kubernetes CPU limit of 2 on a 32-core node sees all 32
cores in its affinity mask, but the kernel lets it run only 2 cores' worth of time per period and throttles the
rest. Sizing one consumer process (or thread pool) per visible core there would start 32 processes that spend most
of each period throttled, which shows up as latency spikes, the one thing the per-core layout exists to avoid. So
the quota caps the count: floor(quota / period), at least 1 (rounding down, as Go's automaxprocs does: a
fractional core buys throttling, not a faster forward pass). Both cgroup v2 (``cpu.max``) and v1
(``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) are read, on this process's own cgroup and every ancestor, since a
limit on a parent applies to its children.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC_SELF = Path("/proc/self")


def usable_cores(proc: Path = PROC_SELF) -> int:
    """Cores in the affinity mask, capped by the cgroup CPU quota when one is set."""
    try:
        visible = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        visible = os.cpu_count() or 1
    quota = cgroup_cpu_limit(proc)
    return max(1, min(visible, quota)) if quota is not None else visible


def cgroup_cpu_limit(proc: Path = PROC_SELF) -> int | None:
    """floor(quota / period) of the tightest CPU quota on this process's cgroup path (v2 or v1), at least 1;
    None where no quota is set or cgroups cannot be read (not Linux, no /proc, an unreadable mount)."""
    try:
        memberships = (proc / "cgroup").read_text(encoding="utf-8").splitlines()
        mounts = (proc / "mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    limits = [limit for directory, top, version in _cpu_cgroup_dirs(memberships, mounts)
              if (limit := _tightest(directory, top, version)) is not None]
    return min(limits) if limits else None


def _cpu_cgroup_dirs(memberships: list[str], mounts: list[str]) -> list[tuple[Path, Path, int]]:
    """(directory of this process's cgroup, its mount point, cgroup version) for the v2 hierarchy and the v1
    ``cpu`` one."""
    found: list[tuple[Path, Path, int]] = []
    for line in memberships:  # "0::/path" (v2) or "4:cpu,cpuacct:/path" (v1)
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        version = 2 if controllers == "" else 1
        if version == 1 and "cpu" not in controllers.split(","):
            continue
        mount = _mount_for(mounts, version)
        if mount is None:
            continue
        root, point = mount
        # Without a cgroup namespace a container's mount root is its own cgroup ("/docker/<id>"): strip it.
        relative = path[len(root):] if root != "/" and path.startswith(root) else path
        found.append((Path(point) / relative.lstrip("/"), Path(point), version))
    return found


def _mount_for(mounts: list[str], version: int) -> tuple[str, str] | None:
    """(root inside the hierarchy, mount point) of the cgroup2 mount, or of the v1 mount carrying ``cpu``."""
    for line in mounts:  # "36 25 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu"
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        kind, options = tail[0], tail[2].split(",")
        if (version == 2 and kind == "cgroup2") or (version == 1 and kind == "cgroup" and "cpu" in options):
            return fields[3], fields[4]
    return None


def _tightest(directory: Path, top: Path, version: int) -> int | None:
    """The smallest whole-core quota on ``directory`` and its ancestors up to the mount point ``top``."""
    limits = []
    for level in (directory, *directory.parents):
        if not level.is_relative_to(top):
            break
        limit = _quota_v2(level) if version == 2 else _quota_v1(level)
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _quota_v2(level: Path) -> int | None:
    try:
        quota, _, period = (level / "cpu.max").read_text(encoding="utf-8").strip().partition(" ")
    except OSError:
        return None
    return _whole_cores(quota, period or "100000")


def _quota_v1(level: Path) -> int | None:
    try:
        quota = (level / "cpu.cfs_quota_us").read_text(encoding="utf-8").strip()
        period = (level / "cpu.cfs_period_us").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return _whole_cores(quota, period)


def _whole_cores(quota: str, period: str) -> int | None:
    """floor(quota / period), at least 1; None for no quota ("max" in v2, -1 in v1) or anything unreadable."""
    if not quota.isdigit() or not period.isdigit() or int(quota) <= 0 or int(period) <= 0:
        return None
    return max(1, int(quota) // int(period))
