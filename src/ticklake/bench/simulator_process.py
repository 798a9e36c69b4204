"""The simulated venues in a process of their own, for the bench stages and the soak: the platform
under measure is not charged for the load generator."""

from __future__ import annotations

import subprocess
import sys
from typing import IO


def start_simulator(env: dict[str, str], stderr: IO[str] | None = None) -> subprocess.Popen[str] | None:
    """Start ``python -m ticklake.simulator`` with ``env`` and add the venue URLs it prints
    (``TICKLAKE_VENUES__<V>__WS_URL`` / ``__REST_URL``) to ``env``, for the platform started next.
    Returns the process, or None when it ended before printing them (it has exited)."""
    simulator = subprocess.Popen([sys.executable, "-m", "ticklake.simulator", "--seed", "3"], env=env,
                                 stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert simulator.stdout is not None
    for line in simulator.stdout:
        if "__WS_URL=" in line or "__REST_URL=" in line:
            key, url = line.strip().split("=", 1)
            env[key] = url
        if line.startswith("Ctrl-C"):  # the last line it prints once every venue listens
            return simulator
    simulator.wait()
    return None
