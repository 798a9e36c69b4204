"""``ticklake_process_memory_limit_bytes``: the memory limit of the process's cgroup, which the alert on
memory near its limit compares resident memory with (deploy/prometheus/alerts.yml).

The kernel's files are laid out here as each setup lays them out (``/proc/<pid>/cgroup``,
``/proc/<pid>/mountinfo`` and the cgroup directories: v2, v1, a container's namespace, a hybrid
host); then a real cgroup with a real limit, where this machine lets the test make one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.cgroup import memory_cgroup
from tests.support.processes import REPO
from ticklake.ops.cgroup import MemoryLimitCollector, memory_limit_bytes

V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 writes for no limit (4 KiB pages)


def mountinfo(*mounts: tuple[str, str, str, str]) -> str:
    """Lines of /proc/<pid>/mountinfo for (root, mount point, fs type, super options)."""
    return "".join(f"{30 + i} 23 0:{40 + i} {root} {point} rw,relatime - {fstype} cgroup {options}\n"
                   for i, (root, point, fstype, options) in enumerate(mounts)) + \
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"


def proc(tmp_path: Path, cgroup: str, mounts: str) -> Path:
    directory = tmp_path / "proc"
    directory.mkdir()
    (directory / "cgroup").write_text(cgroup)
    (directory / "mountinfo").write_text(mounts)
    return directory


def write(path: Path, text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, value in (line.split("=") for line in text.split()):
        (path / name).write_text(value + "\n")


def test_cgroup_v2_the_tightest_limit_up_to_the_mount(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    write(root / "system.slice", "memory.max=2147483648")
    write(root / "system.slice" / "docker-abc.scope", "memory.max=max")
    pid = proc(tmp_path, "0::/system.slice/docker-abc.scope\n", mountinfo(("/", str(root), "cgroup2", "rw")))
    assert memory_limit_bytes(pid) == 2 * 1024**3  # the parent's: the scope itself sets none
    write(root / "system.slice" / "docker-abc.scope", "memory.max=1073741824")
    assert memory_limit_bytes(pid) == 1024**3


def test_cgroup_v2_inside_a_container_namespace(tmp_path: Path) -> None:
    """Docker's default on cgroup v2: the container's cgroup is mounted at /sys/fs/cgroup and the
    process's path in it is /."""
    root = tmp_path / "sys"
    write(root, "memory.max=1073741824")
    pid = proc(tmp_path, "0::/\n", mountinfo(("/", str(root), "cgroup2", "rw")))
    assert memory_limit_bytes(pid) == 1024**3


def test_no_limit_anywhere_is_none(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    write(root / "user.slice", "memory.max=max")  # the root cgroup has no memory.max at all
    pid = proc(tmp_path, "0::/user.slice\n", mountinfo(("/", str(root), "cgroup2", "rw")))
    assert memory_limit_bytes(pid) is None


def test_cgroup_v1_memory_hierarchy(tmp_path: Path) -> None:
    memory = tmp_path / "memory"
    write(memory, f"memory.limit_in_bytes={V1_UNLIMITED}")
    write(memory / "docker" / "abc", "memory.limit_in_bytes=536870912")
    cgroups = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    pid = proc(tmp_path, cgroups, mountinfo(("/", str(memory), "cgroup", "rw,memory"),
                                            ("/", str(tmp_path / "cpu"), "cgroup", "rw,cpu,cpuacct")))
    assert memory_limit_bytes(pid) == 512 * 1024**2


def test_cgroup_v1_unlimited_is_none_and_a_container_mount_is_its_own_cgroup(tmp_path: Path) -> None:
    memory = tmp_path / "memory"
    write(memory, f"memory.limit_in_bytes={V1_UNLIMITED}")
    pid = proc(tmp_path, "4:memory:/docker/abc\n", mountinfo(("/docker/abc", str(memory), "cgroup", "rw,memory")))
    assert memory_limit_bytes(pid) is None
    # Without a cgroup namespace, the container sees its own cgroup mounted with that root.
    write(memory, "memory.limit_in_bytes=268435456")
    assert memory_limit_bytes(pid) == 256 * 1024**2


def test_a_hybrid_host_reads_v1_when_v2_has_no_memory_controller(tmp_path: Path) -> None:
    """This kind of machine: cgroup2 mounted at /sys/fs/cgroup/unified without the memory controller
    (no memory.max files), the memory controller on v1."""
    unified, memory = tmp_path / "unified", tmp_path / "memory"
    write(unified / "session", "cgroup.procs=1")
    write(memory / "session", "memory.limit_in_bytes=805306368")
    pid = proc(tmp_path, "4:memory:/session\n0::/session\n",
               mountinfo(("/", str(unified), "cgroup2", "rw"), ("/", str(memory), "cgroup", "rw,memory")))
    assert memory_limit_bytes(pid) == 768 * 1024**2


def test_nothing_to_read_is_none(tmp_path: Path) -> None:
    assert memory_limit_bytes(tmp_path / "absent") is None
    pid = proc(tmp_path, "0::/x\n", "garbage line\n\n")
    assert memory_limit_bytes(pid) is None


def test_the_collector_is_absent_without_a_limit_and_exact_with_one(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    write(root, "memory.max=max")
    pid = proc(tmp_path, "0::/\n", mountinfo(("/", str(root), "cgroup2", "rw")))
    collector = MemoryLimitCollector(pid)
    [family] = collector.collect()
    assert family.name == "ticklake_process_memory_limit_bytes" and family.samples == []
    write(root, "memory.max=1073741824")  # docker update --memory: read again at the next scrape
    [family] = collector.collect()
    assert [sample.value for sample in family.samples] == [1024**3]


def test_a_real_cgroup_limit_shows_in_the_metrics_of_a_process_inside_it() -> None:
    limit = 300 * 1024**2
    script = ("from prometheus_client import generate_latest; from ticklake.ops.metrics import REGISTRY; "
              "print(generate_latest(REGISTRY).decode())")
    with memory_cgroup(limit) as join_cgroup:
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(REPO / "src")}, preexec_fn=join_cgroup)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    samples = {name: float(value) for name, _, value in (line.partition(" ") for line in lines)
               if name and not name.startswith("#")}
    assert samples.get("ticklake_process_memory_limit_bytes") == limit, [line for line in lines if "limit" in line]
    # The process collector beside it, as the memory alert needs.
    assert 10 * 1024**2 < samples["process_resident_memory_bytes"] < limit
    assert samples["process_start_time_seconds"] > 0


def test_this_process_without_a_limit_exports_no_value() -> None:
    """Where the test suite itself runs without a memory limit, the gauge is absent, not 0 or a huge number."""
    limit = memory_limit_bytes()
    assert limit is None or 0 < limit < 2**62
