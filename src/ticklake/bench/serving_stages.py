"""Stage 4 of ``ticklake bench``: ``/v1/ohlcv`` for 500 one-minute candles over stored trades, over
real HTTP, from a server process of its own (``stages.py serve``), with that process's peak RSS.
``connect`` and ``peak_rss_mb_of`` serve the cold tier's stage too.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ticklake.bench import _stage
from ticklake.drill.services import free_port


def run_serving_stage(workdir: Path, trades: int, requests: int) -> dict[str, Any]:
    path = str(workdir / "serving")
    generated = _stage("generate", path, str(trades))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ticklake.bench.stages", "serve", path, str(port)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "TZ": "UTC"})
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "serving"
        connection = connect(port)
        latencies: list[float] = []
        symbols = 10
        for i in range(requests + 50):
            query = f"/v1/ohlcv?exchange=binance&symbol=SYM{i % symbols}/USDT&timeframe=1m&limit=500"
            started = time.perf_counter()
            connection.request("GET", query)
            response = connection.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200 or len(orjson.loads(body)["candles"]) != 500:
                raise RuntimeError(f"unexpected answer {response.status}: {body[:300]!r}")
            if i >= 50:  # the first requests warm caches
                latencies.append(elapsed)
        latencies.sort()
        rss = peak_rss_mb_of(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return {"trades": trades, "generate_rows_per_s": generated["rows_per_s"], "requests": requests,
            "p50_ms": round(latencies[len(latencies) // 2], 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)], 2), "response_bytes": len(body),
            "server_rss_mb": rss}


def connect(port: int) -> http.client.HTTPConnection:
    """A connection to a server the bench just started, once it accepts (within 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.connect()
            return connection
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def peak_rss_mb_of(pid: int) -> float | None:
    """A running process's peak RSS (VmHWM) in MB; None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        return None
    return None


