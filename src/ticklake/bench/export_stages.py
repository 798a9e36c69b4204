"""Bench stage 11: file exports (issue 12), ``ticklake bench --stages export``.

A warehouse holding N trades of one market (10 million; ``--quick``: 1 million), generated inside
ClickHouse straight into silver (the gold view fires). Then, alternating, in processes of their own
(chdb: one process per data path):

- **direct**: the same rows read straight out of ClickHouse by a bare client in one query each, in the
  format asked: the JSON answer's text as ``CSVWithNames``, the typed columns as ``Parquet`` and as
  ``ArrowStream``;
- **API**: ``ticklake api`` over that warehouse (the real command: its connections, limits, cold-tier
  reader), each format exported over HTTP on loopback into a sink that only counts (CSV) or a temporary
  file that is then checked (Parquet, Arrow: row counts), the API process's RSS sampled every 20 ms.

Prints rows/s and MB/s of each, their ratio, the API's RSS before the first export and its peak.

    python -m ticklake.bench.export_stages generate PATH COUNT   (one market)
    python -m ticklake.bench.export_stages direct PATH           (prints figures as JSON)
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ticklake.bench import _stage
from ticklake.drill.services import free_port

MODULE = "ticklake.bench.export_stages"
DATABASE = "bench"
MARKET = ("binance", "SYM0/USDT")
FORMATS = ("csv", "parquet", "arrow")
_TEXT = """SELECT trade_id, formatDateTime(ts, '%Y-%m-%dT%H:%i:%S.%fZ') AS time, toString(price) AS price,
       toString(qty) AS qty, toString(side) AS side,
       formatDateTime(received_at, '%Y-%m-%dT%H:%i:%S.%fZ') AS received_at
FROM silver_trades WHERE exchange = {exchange:String} AND symbol = {symbol:String} ORDER BY ts, trade_id"""
_TYPED = """SELECT trade_id, ts AS time, price, qty, toString(side) AS side, received_at
FROM silver_trades WHERE exchange = {exchange:String} AND symbol = {symbol:String} ORDER BY ts, trade_id"""


def generate(path: str, count: int) -> dict[str, Any]:
    from ticklake.bench.stages import generate as fill

    return fill(path, count, symbols=1)


def direct(path: str) -> dict[str, Any]:
    """Each format straight out of ClickHouse: one query, the whole result (a bare client: no per-query
    limits, ClickHouse's own threads)."""
    from ticklake.warehouse.client import open_client

    client = open_client(f"chdb://{path}", DATABASE, max_memory_bytes=16_000_000_000)  # whole results in memory
    parameters = {"exchange": MARKET[0], "symbol": MARKET[1]}
    client.raw_query(_TYPED + " LIMIT 1000", parameters=parameters, fmt="ArrowStream")  # warm the process
    result: dict[str, dict[str, Any]] = {}
    # Arrow twice: ClickHouse's default (lz4-compressed, less to copy) and uncompressed (as the API sends
    # it); the faster is the baseline.
    for fmt, sql, clickhouse_format in (
            ("csv", _TEXT, "CSVWithNames"), ("parquet", _TYPED, "Parquet"), ("arrow", _TYPED, "ArrowStream"),
            ("arrow", _TYPED + " SETTINGS output_format_arrow_compression_method = 'none'", "ArrowStream")):
        started = time.perf_counter()
        body = client.raw_query(sql, parameters=parameters, fmt=clickhouse_format)
        seconds = time.perf_counter() - started
        if fmt not in result or seconds < result[fmt]["seconds"]:
            result[fmt] = {"seconds": round(seconds, 2), "bytes": len(body)}
        del body
    client.close()
    return result


class _RssSampler:
    """The peak resident memory of a process, sampled every 20 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid)["rss"])
            self._stop.wait(0.02)


def rss_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process: the whole, anonymous (its heap), file-backed (code, libraries)."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    result = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name = line.split()[0] if line else ""
        if name in fields:
            result[fields[name]] = round(int(line.split()[1]) / 1024, 1)
    return result


def _export_over_http(port: int, fmt: str, workdir: Path) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("GET", f"/v1/trades?exchange={MARKET[0]}&symbol={MARKET[1]}&format={fmt}")
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"export answered {response.status}: {response.read()[:300]!r}")
    size, lines = 0, 0
    target = workdir / f"export.{fmt}"
    with target.open("wb") as sink:
        while True:
            piece = response.read(1 << 20)
            if not piece:
                break
            size += len(piece)
            if fmt == "csv":
                lines += piece.count(b"\n")  # a sink that only counts: CSV is checked by its rows
            else:
                sink.write(piece)
    seconds = time.perf_counter() - started
    connection.close()
    if fmt == "csv":
        rows = lines - 1
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(target).metadata.num_rows
    else:
        import pyarrow as pa

        with pa.memory_map(str(target)) as source:
            rows = sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    target.unlink()
    return {"seconds": round(seconds, 2), "bytes": size, "rows": rows}


def _client_frames(port: int, rows: int = 1_000_000) -> dict[str, Any]:
    """The Python client's DataFrame of the first ``rows`` trades (float columns), from an Arrow export
    and from JSON pages of 5,000: the same frame (checked), and how fast each came."""
    import pandas as pd

    from ticklake.client import TicklakeClient

    result: dict[str, Any] = {"rows": rows}
    frames = {}
    with TicklakeClient(f"http://127.0.0.1:{port}", timeout=600) as client:
        for how in ("arrow", "parquet", "json"):
            started = time.perf_counter()
            frames[how] = client.trades(*MARKET, limit=5000, max_rows=rows, as_float=True, format=how)
            result[f"{how}_rows_per_s"] = round(rows / (time.perf_counter() - started))
    for how in ("arrow", "parquet"):
        pd.testing.assert_frame_equal(frames[how], frames["json"])
    result["same_frames"] = True
    return result


def api_exports(path: str, workdir: Path) -> dict[str, Any]:
    """``ticklake api`` over the warehouse; each format exported once after a small warm-up."""
    port = free_port()
    env = {**os.environ, "TZ": "UTC", "TICKLAKE_WAREHOUSE_URL": f"chdb://{path}", "TICKLAKE_DATABASE": DATABASE,
           "TICKLAKE_DATA_DIR": str(workdir / "api-data"), "TICKLAKE_API__PORT": str(port),
           "TICKLAKE_API__HOST": "127.0.0.1", "TICKLAKE_LOG_LEVEL": "WARNING"}
    log = (workdir / "export-api.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "ticklake.cli", "api"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", f"/v1/ohlcv?exchange={MARKET[0]}&symbol={MARKET[1]}&limit=10")
                answer = connection.getresponse()
                answer.read()
                if answer.status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ticklake api did not start: see {workdir / 'export-api.log'}")
            time.sleep(0.2)
        connection.request("GET", f"/v1/trades?exchange={MARKET[0]}&symbol={MARKET[1]}&limit=1000&format=csv")
        connection.getresponse().read()  # a small export first: every code path loaded
        connection.close()
        result: dict[str, Any] = {"rss_before_mb": rss_mb(server.pid)}
        for fmt in FORMATS:
            with _RssSampler(server.pid) as sampler:
                result[fmt] = _export_over_http(port, fmt, workdir)
            result[fmt]["peak_rss_mb"] = sampler.peak_mb
        result["rss_after_mb"] = rss_mb(server.pid)
        result["client"] = _client_frames(port)
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    return result


def run_export_stages(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    count = int(sizes["export_trades"])
    path = str(workdir / "export")
    print(f"  export: generating {count:,} trades of one market ...", file=sys.stderr, flush=True)
    generated = _stage("generate", path, str(count), module=MODULE)
    print("  export: direct reads, then the API's exports over HTTP, then direct again ...", file=sys.stderr,
          flush=True)
    first = _stage("direct", path, module=MODULE)
    api = api_exports(path, workdir)
    second = _stage("direct", path, module=MODULE)
    report: dict[str, Any] = {"trades": count, "generate_rows_per_s": generated["rows_per_s"],
                              "rss_before_mb": api["rss_before_mb"], "rss_after_mb": api["rss_after_mb"],
                              "client": api["client"]}
    for fmt in FORMATS:
        # The faster of the two direct reads: the stricter baseline.
        fastest = min(first[fmt], second[fmt], key=lambda r: float(r["seconds"]))
        seconds = fastest["seconds"]
        served = api[fmt]
        report[fmt] = {
            "rows": served["rows"], "api_rows_per_s": round(count / served["seconds"]),
            "api_mb_per_s": round(served["bytes"] / served["seconds"] / 1e6, 1), "api_bytes": served["bytes"],
            "direct_rows_per_s": round(count / seconds),
            "direct_mb_per_s": round(fastest["bytes"] / seconds / 1e6, 1),
            "direct_bytes": fastest["bytes"], "ratio": round(seconds / served["seconds"], 3),
            "peak_rss_mb": served["peak_rss_mb"],
        }
    return report


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        print(json.dumps(generate(sys.argv[2], int(sys.argv[3]))))
    elif sys.argv[1] == "direct":
        print(json.dumps(direct(sys.argv[2])))
    else:
        raise SystemExit(f"unknown stage {sys.argv[1]}")
