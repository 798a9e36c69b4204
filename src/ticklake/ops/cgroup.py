"""The memory limit the kernel enforces on this process: its cgroup's, as a container runtime (compose's
``deploy.resources.limits.memory``) or systemd (``MemoryMax=``) set it.

Read from the files the kernel exposes, at every call (``docker update --memory`` changes it live):

- cgroup v2: ``memory.max`` of the process's cgroup and of each ancestor up to the mount ("max": none);
- cgroup v1: ``memory.limit_in_bytes`` of the memory hierarchy's cgroup and its ancestors (no limit is
  a huge number, about 2**63).

The tightest limit on the way up is the one that applies. Where the cgroup is mounted, and the
process's path in it, come from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``: inside a container
the path is usually ``/`` (a cgroup namespace) and the mount is the container's own cgroup; without a
namespace the mount's root names the path already. No limit, or no cgroup file to read (not Linux),
is ``None``: the metric is then absent, never a made-up value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# cgroup v1 writes "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages); no
# machine has 2**62 bytes of memory, so anything above is "none" whatever the page size.
_V1_UNLIMITED = 2**62


def _cgroup_paths(proc_cgroup: str) -> tuple[str | None, str | None]:
    """(the v2 path, the v1 memory hierarchy's path) of ``/proc/<pid>/cgroup``'s text."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _mounts(mountinfo: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(v2 mounts, v1 memory mounts) of ``/proc/<pid>/mountinfo``'s text, each (root, mount point)."""
    v2: list[tuple[str, str]] = []
    v1: list[tuple[str, str]] = []
    for line in mountinfo.splitlines():
        before, separator, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not separator or len(fields) < 5 or len(tail) < 3:
            continue
        root, point = fields[3], fields[4].replace("\\040", " ")
        if tail[0] == "cgroup2":
            v2.append((root, point))
        elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
            v1.append((root, point))
    return v2, v1


def _directories(path: str, mounts: list[tuple[str, str]]) -> Iterator[tuple[Path, Path]]:
    """For each mount that holds ``path``: (the cgroup's directory, the mount point)."""
    for root, point in mounts:
        root = root.rstrip("/") or "/"
        if root == "/":
            relative = path.lstrip("/")
        elif path == root or path.startswith(root + "/"):
            relative = path[len(root):].lstrip("/")
        else:
            continue
        yield Path(point) / relative, Path(point)


def _tightest(directory: Path, top: Path, file: str, unlimited: int | None) -> int | None:
    """The lowest limit in ``file`` from ``directory`` up to ``top`` (the mount point), or None."""
    found: int | None = None
    current = directory
    while True:
        try:
            text = (current / file).read_text().strip()
        except OSError:  # the root cgroup has no limit file; a path outside this mount has none either
            text = "max"
        if text != "max":
            try:
                value = int(text)
            except ValueError:
                value = None
            if value is not None and (unlimited is None or value < unlimited):
                found = value if found is None else min(found, value)
        if current == top or current.parent == current:
            return found
        current = current.parent


def memory_limit_bytes(proc: Path = Path("/proc/self")) -> int | None:
    """The memory limit of the cgroup ``proc`` (a ``/proc/<pid>`` directory) runs in; None: no limit,
    or none that can be read."""
    try:
        v2_path, v1_path = _cgroup_paths((proc / "cgroup").read_text())
        v2_mounts, v1_mounts = _mounts((proc / "mountinfo").read_text())
    except OSError:
        return None
    limits: list[int] = []
    if v2_path is not None:
        for directory, top in _directories(v2_path, v2_mounts):
            limit = _tightest(directory, top, "memory.max", None)
            if limit is not None:
                limits.append(limit)
    if v1_path is not None:
        for directory, top in _directories(v1_path, v1_mounts):
            limit = _tightest(directory, top, "memory.limit_in_bytes", _V1_UNLIMITED)
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


class MemoryLimitCollector(Collector):
    """``ticklake_process_memory_limit_bytes``, read at each scrape; absent when there is no limit."""

    def __init__(self, proc: Path = Path("/proc/self")) -> None:
        self.proc = proc

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> list[GaugeMetricFamily]:
        family = self._family()
        limit = memory_limit_bytes(self.proc)
        if limit is not None:
            family.add_metric([], float(limit))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "ticklake_process_memory_limit_bytes", "The memory limit of this process's cgroup (its container's "
            "limit; the tightest on the way to the root); absent when there is none. Compare with "
            "process_resident_memory_bytes")
