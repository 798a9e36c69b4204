"""A real Prometheus on loopback for the operations tests: Debian's ``prometheus`` package (2.42).

``Prometheus(work_dir, targets).start()`` runs the server with a configuration of its own (static
scrape targets per job, a short scrape interval), its storage in ``work_dir``, bound to a free port
on 127.0.0.1; ``query`` asks its HTTP API (``/api/v1/query``) what a dashboard or a user would.
The server dies with the test process (it is killed on ``stop``, at the end of ``running``, and by
the kernel if the test process itself is killed), so no Prometheus outlives a test run.

Missing binary: the test is skipped, or fails when ``CI`` is set (scripts/test installs the package).
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.processes import free_port

PROMETHEUS = Path("/usr/bin/prometheus")
READY_TIMEOUT_S = 30.0


def prometheus_binary() -> Path:
    """Debian's Prometheus, or a skip (a failure in CI, where scripts/test installs it)."""
    if PROMETHEUS.is_file() and os.access(PROMETHEUS, os.X_OK):
        return PROMETHEUS
    if os.environ.get("CI"):
        pytest.fail("Prometheus is missing: scripts/test installs Debian's prometheus package (apt)")
    pytest.skip("Debian's prometheus package is not installed (scripts/test installs it)")


def _die_with_the_tests() -> None:
    """In the child before exec (Linux): the kernel sends it SIGKILL when the test process dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class QueryError(AssertionError):
    """Prometheus refused a query (it does not parse, or cannot be evaluated)."""


class Prometheus:
    """One Prometheus server scraping ``targets`` (job name -> ``host:port`` addresses, each serving
    ``/metrics``) every ``scrape_interval_s``. ``url`` is its address once started."""

    def __init__(self, work_dir: Path, targets: Mapping[str, Sequence[str]], scrape_interval_s: float = 1.0) -> None:
        self.work_dir = work_dir
        self.targets = {job: list(addresses) for job, addresses in targets.items()}
        self.scrape_interval_s = scrape_interval_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work_dir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=30)  # one connection for the many queries

    def config(self) -> dict[str, Any]:
        interval = f"{self.scrape_interval_s:g}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       # A scrape must end before the next one begins.
                       "scrape_timeout": interval},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addresses}]}
                               for job, addresses in self.targets.items()],
        }

    def start(self) -> Prometheus:
        binary = prometheus_binary()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.work_dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        command = [str(binary), f"--config.file={config_file}", f"--storage.tsdb.path={self.work_dir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir, start_new_session=True,
                preexec_fn=_die_with_the_tests if sys.platform == "linux" else None)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.tail()}")
            try:
                if self.http.get("/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prometheus was not ready in {READY_TIMEOUT_S:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        """Kill the server (its data is a test's throw-away) and reap it."""
        self.http.close()
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    # --- the HTTP API ---------------------------------------------------------------------------
    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one series without labels) ``expression`` evaluates to
        now; a ``QueryError`` with Prometheus's own reason if it refuses the expression."""
        body = self.http.get("/api/v1/query", params={"query": expression}).json()
        if body.get("status") != "success":
            raise QueryError(f"{expression!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets_health(self) -> dict[str, str]:
        """Each active target's scrape URL -> its health (up, down, unknown) and last error."""
        body = self.http.get("/api/v1/targets", params={"state": "active"}).json()
        return {t["scrapeUrl"]: t["health"] + (f" ({t['lastError']})" if t.get("lastError") else "")
                for t in body["data"]["activeTargets"]}

    def wait_until_up(self, timeout: float = 60) -> None:
        """Wait until every target has been scraped successfully."""
        expected = sum(len(addresses) for addresses in self.targets.values())
        deadline = time.monotonic() + timeout
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            health = self.targets_health()
            if len(health) == expected and all(state == "up" for state in health.values()):
                return
            time.sleep(0.2)
        raise AssertionError(f"the scrape targets never all came up: {health}")

    def wait_for_series(self, expression: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until ``expression`` returns at least one series with a finite value."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expression)
            if any(finite(series) for series in result):
                return result
            time.sleep(0.2)
        raise AssertionError(f"{expression!r} returned no finite series in {timeout:.0f} s: {result}")


def finite(series: Mapping[str, Any]) -> bool:
    """Whether an instant-query series holds a number (Grafana draws nothing for NaN or ±Inf)."""
    return math.isfinite(float(series["value"][1]))


@contextmanager
def running(work_dir: Path, targets: Mapping[str, Sequence[str]], scrape_interval_s: float = 1.0
            ) -> Iterator[Prometheus]:
    """A started Prometheus scraping ``targets``, killed afterwards whatever happened."""
    server = Prometheus(work_dir, targets, scrape_interval_s)
    try:
        yield server.start()
    finally:
        server.stop()
