"""Bench stage 9: the whole embedded platform as it runs all day (issue 10).

``ticklake up`` (feeds, embedded bus, writer, API, offloader) runs in a process of its own against the
simulator in another, and is measured from outside, as a user would see it:

- its cost at 50, 500 and 5,000 trades/s: CPU (cores, and cores per 1,000 trades/s), RSS, trade ->
  candle latency, how often it writes, and where the CPU goes (per thread: the event loop, the
  warehouse writer, the API's readers, ClickHouse's own background threads);
- ``/v1/ohlcv`` for 500 one-minute candles on one connection while ingesting 1,500 trades/s, next to
  the same requests once the venues stopped trading (an idle platform, the same data), and the newest
  candles of a market every batch writes (each write makes the next request read the warehouse);
- 32 concurrent heavy readers (``/v1/trades``, 5,000 trades from 1970) for a while at 500 trades/s,
  next to the same time without them: latency, ``/health``, the bus backlog, the answers (503s).

First, what one small write costs, table by table, with the parts migration 0005 packs into one file
against ClickHouse's default parts, side by side in one process.

The platform process is driven over its stdin (``begin`` / ``end`` a measured window, ``stop``) and
answers one JSON line per window; load comes from the bench process, so that readers compete with
the platform for the machine, not for its interpreter.

    python -m ticklake.bench.platform_stages child PATH PORT   (used by run_platform_stages)
    python -m ticklake.bench.platform_stages writes PATH WRITES
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.abc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

from ticklake.bench.simulator_process import start_simulator
from ticklake.bench.soak_probe import process_times
from ticklake.drill.services import free_port

# SYM0/USDT: 10 hours of one-minute candles, stored before the start, in a market the simulator does not trade.
HEAVY_TRADES = "/v1/trades?exchange=binance&symbol=SYM0/USDT&start=1970-01-01T00:00:00Z&limit=5000"
CANDLES = "/v1/ohlcv?exchange=binance&symbol=SYM0/USDT&timeframe=1m&limit=500"
# A market the simulator trades: every batch writes it, so the candle cache keeps an answer ~100 ms.
LIVE_CANDLES = "/v1/ohlcv?exchange=binance&symbol=BTC/USDT&timeframe=1m&limit=500"


# --- the platform process ------------------------------------------------------------------------
def _thread_cpu() -> dict[int, tuple[str, float]]:
    """thread id -> (name, CPU seconds so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    result = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        result[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return result


def _thread_label(tid: int, comm: str, python_names: dict[int, str]) -> str:
    name = python_names.get(tid)
    if name == "MainThread":
        return "event loop (feeds, bus, API)"
    if name is not None and name.startswith("warehouse"):
        return "warehouse thread (writer, checks)"
    if name is not None and "AnyIO" in name:
        return "API reads"
    if name is not None:
        return f"python: {name.rstrip('_0123456789')}"
    return f"clickhouse: {comm}"


def _memory_mb() -> dict[str, float]:
    """VmRSS, and its parts: RssAnon (what the process allocated) and RssFile (code and libraries
    mapped from disk: clean pages the kernel drops under memory pressure and reads back if needed)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(line.split()[1]) / 1024
    return fields


class _AsInstalled(importlib.abc.MetaPathFinder):
    """pandas hidden, as ``pip install ticklake`` has none (it comes with the client and test extras,
    which the bench runs under): pyarrow.dataset, the cold tier's, would import it (~35 MB)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


class _WorkerWatch:
    """The cold tier's worker process (lake/worker.py), charged to the platform: its CPU (reaped
    workers through RUSAGE_CHILDREN, the live one from /proc), its peak RSS and the platform's
    together with it, and how long one was running."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker  # a ProcessWorker (pid: the live worker's or None; started: how many so far)
        self.peak_ever_rss_mb = self.peak_ever_total_mb = 0.0  # since the start, warm-up included
        self.reset()

    def worker_pid(self) -> int | None:
        return getattr(self.worker, "pid", None)

    def cpu_s(self) -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        pid = self.worker_pid()
        live = process_times(pid, "worker") if pid else None  # None too once it is gone
        return usage.ru_utime + usage.ru_stime + (live.cpu_s if live else 0.0)

    def reset(self) -> None:
        self.started_cpu = self.cpu_s()
        self.peak_rss_mb = self.peak_total_mb = 0.0
        self.alive_s = 0.0

    def sample(self, interval_s: float) -> None:
        pid = self.worker_pid()
        live = process_times(pid, "worker") if pid else None
        if live is None:
            return
        rss = live.rss_mb
        self.alive_s += interval_s
        self.peak_rss_mb = max(self.peak_rss_mb, rss)
        self.peak_total_mb = max(self.peak_total_mb, rss + _memory_mb()["VmRSS"])
        self.peak_ever_rss_mb = max(self.peak_ever_rss_mb, self.peak_rss_mb)
        self.peak_ever_total_mb = max(self.peak_ever_total_mb, self.peak_total_mb)

    def figures(self, seconds: float) -> dict[str, Any]:
        return {"worker_runs": getattr(self.worker, "started", 0), "worker_cpu_s_so_far": round(self.cpu_s(), 2),
                "worker_cores": round((self.cpu_s() - self.started_cpu) / seconds, 3),
                "worker_peak_rss_mb": round(self.peak_rss_mb), "with_worker_peak_rss_mb": round(self.peak_total_mb),
                "worker_alive_share": round(self.alive_s / seconds, 3),
                "worker_peak_ever_rss_mb": round(self.peak_ever_rss_mb),
                "with_worker_peak_ever_rss_mb": round(self.peak_ever_total_mb)}


def _quantile(ordered: list[float], q: float) -> float | None:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None


def child(path: str, port: int) -> None:
    sys.meta_path.insert(0, _AsInstalled())
    from ticklake.bench.stages import synthetic_trades
    from ticklake.platform import Platform
    from ticklake.settings import Settings
    from ticklake.warehouse.writer import Plan

    settings = Settings(data_dir=path)
    settings.api = settings.api.model_copy(update={"port": port})

    samples: list[float] = []
    flushes = [0]

    def on_batch(plan: Plan) -> None:
        now_us = time.time() * 1_000_000
        samples.extend((now_us - t.received_us) / 1000 for t in plan.silver)
        flushes[0] += 1

    async def run() -> None:
        platform = Platform(settings, on_batch=on_batch)
        await platform.start()
        assert platform.ingester is not None
        loop = asyncio.get_running_loop()
        # The history the read tests ask for, in a market the simulator does not trade.
        frames, trades = synthetic_trades(18_000, markets=1, step_us=2_000_000,
                                          start_us=int(time.time() * 1e6) - 36_000_000_000)
        await loop.run_in_executor(platform._executor, platform.ingester.writer.write, frames, trades)
        backlog = [0]
        offloader = platform.offloader
        worker = _WorkerWatch(offloader.worker if offloader is not None else None)

        async def watch_backlog() -> None:
            ticks = 0
            while True:
                backlog[0] = max(backlog[0], platform.ingester.depth() if platform.ingester else 0)
                ticks += 1
                if ticks % 25 == 0:
                    worker.sample(0.5)
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch_backlog())
        print(json.dumps({"ready": port}), flush=True)
        window: dict[str, Any] = {}
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if command == "begin":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                window = {"at": time.monotonic(), "cpu": usage.ru_utime + usage.ru_stime,
                          "threads": _thread_cpu(), "flushes": flushes[0]}
                samples.clear()
                backlog[0] = 0
                worker.reset()
            elif command == "end":
                figures = _window_figures(window, samples, flushes[0], backlog[0])
                figures.update(worker.figures(figures["seconds"]))
                # The worker's CPU is the platform's: "cores" counts both, "process_cores" the process.
                figures["process_cores"] = figures["cores"]
                figures["cores"] = round(figures["cores"] + figures["worker_cores"], 3)
                if figures["trades_per_s"]:
                    figures["cores_per_1000_trades_per_s"] = round(figures["cores"] / figures["trades_per_s"] * 1000, 3)
                print(json.dumps(figures), flush=True)
            elif command in ("stop", ""):
                break
        watcher.cancel()
        await platform.stop()

    asyncio.run(run())


def _window_figures(window: dict[str, Any], samples: list[float], flushes: int, backlog: int) -> dict[str, Any]:
    seconds = time.monotonic() - window["at"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - window["cpu"]
    python_names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    by_label: Counter[str] = Counter()
    before = window["threads"]
    for tid, (comm, spent) in _thread_cpu().items():
        by_label[_thread_label(tid, comm, python_names)] += spent - before.get(tid, (comm, 0.0))[1]
    ordered = sorted(samples)
    memory = _memory_mb()
    trades_per_s = len(samples) / seconds
    return {
        "seconds": round(seconds, 1), "trades": len(samples), "trades_per_s": round(trades_per_s),
        "cores": round(cpu / seconds, 3),
        "cores_per_1000_trades_per_s": round(cpu / seconds / trades_per_s * 1000, 3) if trades_per_s else None,
        "rss_mb": round(memory["VmRSS"]), "rss_anon_mb": round(memory["RssAnon"]),
        "rss_file_mb": round(memory["RssFile"]), "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "pandas_loaded": sys.modules.get("pandas") is not None,  # never, as installed (_AsInstalled)
        "writes_per_s": round((flushes - window["flushes"]) / seconds, 1),
        "latency_p50_ms": _quantile(ordered, 0.5), "latency_p99_ms": _quantile(ordered, 0.99),
        "latency_max_ms": round(ordered[-1], 1) if ordered else None,
        "backlog_max": backlog, "backlog_max_s": round(backlog / trades_per_s, 3) if trades_per_s else None,
        "cpu_by_thread": {label: round(spent / seconds, 3) for label, spent in by_label.most_common()
                          if spent / seconds >= 0.002},
    }


def small_writes(path: str, writes: int) -> dict[str, Any]:
    """CPU of one small write (4 trades, 4 frames) through every layer, by table, with the parts of
    migration 0005 (packed into one file) against ClickHouse's default parts (the schema at version 4),
    in two databases of one warehouse, alternating rounds. Merges that follow are counted too."""
    from ticklake.bench.stages import synthetic_trades
    from ticklake.settings import ValidationSettings
    from ticklake.warehouse import migrate
    from ticklake.warehouse.client import open_client
    from ticklake.warehouse.writer import INSERT_ORDER, WarehouseWriter

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    writers = {}
    for name, version in (("packed", None), ("default", 4)):
        client = open_client(f"chdb://{path}", f"writes_{name}")
        migrate.upgrade(client, version)
        writers[name] = WarehouseWriter(client, ValidationSettings())
    frames, trades = synthetic_trades(writes * 4 * 3, markets=30, step_us=10_000)
    spent: dict[str, dict[str, float]] = {name: defaultdict(float) for name in writers}
    done: Counter[str] = Counter()
    position = 0
    for _round in range(3):
        for name, writer in writers.items():
            for _ in range(writes // 3):
                batch_frames, batch = frames[position:position + 1], trades[position * 4:position * 4 + 4]
                position += 1
                plan = writer.plan(batch_frames, batch)
                for table in INSERT_ORDER:
                    if table in plan.tables:
                        started = cpu()
                        writer._insert_table(plan, table)  # one table at a time, to see what each costs
                        spent[name][table] += cpu() - started
                done[name] += 1
            started = cpu()
            time.sleep(2)  # the merges those parts set off (the writer itself is idle)
            spent[name]["merges"] += cpu() - started
    return {name: {"writes": done[name], "ms_per_write": round(sum(s.values()) / done[name] * 1000, 2),
                   "by_table_ms": {table: round(v / done[name] * 1000, 2) for table, v in s.items()}}
            for name, s in spent.items()}


# --- the bench side ------------------------------------------------------------------------------
class _Running:
    """A simulator and a platform process over it."""

    def __init__(self, workdir: Path, name: str, trades_per_second: float, first_offload_s: int = 60) -> None:
        from ticklake.settings import Settings

        markets = sum(len(v.symbols) for v in Settings().venues.enabled().values())
        env = {**os.environ, "TZ": "UTC",
               "TICKLAKE_SIMULATOR__TRADES_PER_SECOND": str(trades_per_second / markets),
               # The first offload comes one safety lag after the start (60 s by default).
               "TICKLAKE_LAKE__SAFETY_LAG_S": str(first_offload_s)}
        simulator = start_simulator(env)
        if simulator is None:
            raise RuntimeError("the simulator did not start")
        self.simulator = simulator
        self.port = free_port()
        self.log = (workdir / f"{name}.log").open("w")  # the platform's own log, out of the bench's way
        self.platform = subprocess.Popen(
            [sys.executable, "-m", "ticklake.bench.platform_stages", "child", str(workdir / name), str(self.port)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready = self._answer()
        if "ready" not in ready:
            raise RuntimeError(f"the platform did not start: {ready}")

    def _answer(self) -> dict[str, Any]:
        assert self.platform.stdout is not None
        for line in self.platform.stdout:
            if line.startswith("{"):
                answer: dict[str, Any] = json.loads(line)
                return answer
        raise RuntimeError(f"the platform process ended (status {self.platform.wait()})")

    def measure(self, seconds: float, during: Any = None) -> dict[str, Any]:
        """One window of ``seconds``; ``during(deadline)`` runs meanwhile, its result under "load"."""
        assert self.platform.stdin is not None
        self.platform.stdin.write("begin\n")
        self.platform.stdin.flush()
        deadline = time.monotonic() + seconds
        load = during(deadline) if during is not None else None
        time.sleep(max(0.0, deadline - time.monotonic()))
        self.platform.stdin.write("end\n")
        self.platform.stdin.flush()
        figures = self._answer()
        if load is not None:
            figures["load"] = load
        return figures

    def stop_trading(self) -> None:
        self.simulator.terminate()
        self.simulator.wait(30)

    def close(self) -> None:
        if self.platform.poll() is None and self.platform.stdin is not None:
            self.platform.stdin.write("stop\n")
            self.platform.stdin.flush()
            try:
                self.platform.wait(60)
            except subprocess.TimeoutExpired:
                self.platform.kill()
        if self.simulator.poll() is None:
            self.stop_trading()
        self.log.close()


def _get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    return response.status, body, (time.perf_counter() - started) * 1000


def _connection(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def _one_connection_candles(port: int, deadline: float, path: str = CANDLES) -> dict[str, Any]:
    """``/v1/ohlcv`` back to back on one connection until ``deadline``."""
    connection = _connection(port)
    for _ in range(20):  # warm up
        _get(connection, path)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    candles = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        status, body, ms = _get(connection, path)
        statuses[status] += 1
        if status == 200:
            candles = len(orjson.loads(body)["candles"])
            if path == CANDLES and candles != 500:
                raise RuntimeError(f"expected 500 candles, got {candles}")
            latencies.append(ms)
    seconds = time.monotonic() - started
    latencies.sort()
    return {"candles": candles, "requests": sum(statuses.values()),
            "requests_per_s": round(sum(statuses.values()) / seconds),
            "p50_ms": _quantile(latencies, 0.5), "p99_ms": _quantile(latencies, 0.99),
            "statuses": {str(k): v for k, v in statuses.items()}}


def _heavy_readers(port: int, readers: int) -> Any:
    """Start ``readers`` threads asking for 5,000 trades each, back to back, and a /health poller
    (every 0.5 s); the returned function waits for them at the deadline and sums up."""
    statuses: Counter[int] = Counter()
    health: Counter[str] = Counter()
    retry_after: set[str] = set()
    lock = threading.Lock()

    def start(deadline: float) -> dict[str, Any]:
        def read() -> None:
            connection = _connection(port)
            while time.monotonic() < deadline:
                try:
                    connection.request("GET", HEAVY_TRADES)
                    response = connection.getresponse()
                    response.read()
                    with lock:
                        statuses[response.status] += 1
                        if response.status == 503:
                            retry_after.add(response.getheader("Retry-After") or "missing")
                    if response.status == 503:  # as a polite client does
                        time.sleep(float(response.getheader("Retry-After") or 1))
                except (OSError, http.client.HTTPException):
                    with lock:
                        statuses[0] += 1
                    connection = _connection(port)

        def poll_health() -> None:
            connection = _connection(port)
            while time.monotonic() < deadline:
                status, body, _ms = _get(connection, "/health")
                health[orjson.loads(body).get("status", str(status)) if body else str(status)] += 1
                time.sleep(0.5)

        threads = [threading.Thread(target=read, daemon=True) for _ in range(readers)]
        threads.append(threading.Thread(target=poll_health, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 90)
        return {"readers": readers, "statuses": {str(k): v for k, v in statuses.items()},
                "health": dict(health), "retry_after": sorted(retry_after)}

    return start


def _health_only(port: int) -> Any:
    def start(deadline: float) -> dict[str, Any]:
        connection = _connection(port)
        health: Counter[str] = Counter()
        while time.monotonic() < deadline:
            status, body, _ms = _get(connection, "/health")
            health[orjson.loads(body).get("status", str(status))] += 1
            time.sleep(0.5)
        return {"readers": 0, "health": dict(health)}

    return start


def run_platform_stages(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    warm_up, window, reads_s, readers_s = (sizes["platform_warmup_s"], sizes["platform_window_s"],
                                           sizes["platform_reads_s"], sizes["platform_readers_s"])
    report: dict[str, Any] = {"loads": {}}
    print("  platform: the cost of one small write, packed parts against default ones ...", file=sys.stderr,
          flush=True)
    result = subprocess.run([sys.executable, "-m", "ticklake.bench.platform_stages", "writes",
                             str(workdir / "small-writes"), str(sizes["platform_writes"])],
                            capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"the small-writes stage failed:\n{result.stderr[-3000:]}")
    report["small_writes"] = json.loads(result.stdout.strip().splitlines()[-1])
    for rate in (50, 500, 5000):
        print(f"  platform at {rate} trades/s ...", file=sys.stderr, flush=True)
        # The first offload 10 s after the start, so that it (and its worker process) has come and gone
        # by the end of the warm-up: the windows measure the platform as it is between offloads.
        running = _Running(workdir, f"platform-{rate}", rate, first_offload_s=10)
        try:
            time.sleep(warm_up)
            report["loads"][str(rate)] = running.measure(window)
            if rate == 500:
                report["readers"] = {
                    "without": running.measure(readers_s, _health_only(running.port)),
                    "with": running.measure(readers_s, _heavy_readers(running.port, 32)),
                }
        finally:
            running.close()
    print("  platform: /v1/ohlcv while ingesting 1,500 trades/s, then idle ...", file=sys.stderr, flush=True)
    # No offload before the reads (default safety lag): with candles in the cold tier, a young market's
    # page of 500 is not full from the warm tier alone and every request would read the cold one too
    # (~36 ms, not cached: a figure of the cold tier's, docs/lake.md), not what these requests measure.
    running = _Running(workdir, "platform-reads", 1500)
    try:
        time.sleep(warm_up)
        ingesting = running.measure(reads_s, lambda deadline: _one_connection_candles(running.port, deadline))
        live = running.measure(reads_s, lambda deadline: _one_connection_candles(running.port, deadline,
                                                                                  LIVE_CANDLES))
        running.stop_trading()
        time.sleep(5)
        idle = running.measure(reads_s, lambda deadline: _one_connection_candles(running.port, deadline))
        report["candles"] = {"ingesting": ingesting, "live": live, "idle": idle}
    finally:
        running.close()
    return report


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "writes":
        print(json.dumps(small_writes(sys.argv[2], int(sys.argv[3]))))
    else:
        raise SystemExit(f"unknown stage {sys.argv[1]}")
