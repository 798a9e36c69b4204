"""A real memory cgroup for a test's process: what ``ticklake_process_memory_limit_bytes`` (and the
alert and panel on it) read in a container with a memory limit."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _make(limit: int) -> Path | None:
    """A new child cgroup of this machine's memory controller with ``limit``: its directory, or None
    where none can be made (not root, no writable cgroup v1 or v2 memory controller)."""
    candidates = [(Path("/sys/fs/cgroup"), "memory.max"), (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes")]
    for parent, limit_file in candidates:
        if limit_file == "memory.max":
            controllers = parent / "cgroup.subtree_control"
            if not controllers.exists() or "memory" not in controllers.read_text().split():
                continue
        elif not (parent / limit_file).exists():
            continue
        child = parent / f"ticklake-test-{uuid.uuid4().hex[:8]}"
        try:
            child.mkdir()
        except OSError:
            continue
        try:
            (child / limit_file).write_text(str(limit))
        except OSError:
            child.rmdir()
            continue
        return child
    return None


@contextmanager
def memory_cgroup(limit: int) -> Iterator[Callable[[], None]]:
    """A cgroup limited to ``limit`` bytes, as a ``preexec_fn`` that moves a starting child process into
    it (before it runs Python, so it starts inside the limit). Skips the test where no cgroup can be made
    here, and fails instead on CI, whose test command runs as root. The cgroup is removed once its
    processes have exited (the caller stops them inside the ``with``)."""
    cgroup = _make(limit)
    if cgroup is None:
        message = "cannot create a memory cgroup here (needs root and a writable cgroup v1 or v2 memory controller)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    procs = cgroup / "cgroup.procs"

    def join() -> None:
        procs.write_text(str(os.getpid()))

    try:
        yield join
    finally:
        with contextlib.suppress(OSError):  # a process still inside: the kernel refuses
            cgroup.rmdir()
