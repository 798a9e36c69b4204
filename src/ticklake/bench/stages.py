"""Benchmark stages. Each runs in its own process (chdb opens one data path per process, and each
stage's peak memory is then its own) and prints one JSON object on its last line.

    python -m ticklake.bench.stages ingest PATH TRADES
    python -m ticklake.bench.stages generate PATH TRADES
    python -m ticklake.bench.stages latency PATH SECONDS TRADES_PER_SECOND
    python -m ticklake.bench.stages handlers SECONDS SYMBOLS_PER_VENUE TRADES_PER_SECOND_PER_SYMBOL
    python -m ticklake.bench.stages serve PATH PORT
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from importlib import resources as package_files
from typing import Any

from ticklake.model import RawFrame, Side, Trade
from ticklake.settings import KafkaSettings, Settings, ValidationSettings
from ticklake.warehouse import arrow, migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.sql import split_statements
from ticklake.warehouse.writer import WarehouseWriter

BATCH = 50_000
LAYERS = ("raw_frames", "bronze_trades", "silver_trades", "dead_letters", "gold_ohlcv")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_trades(count: int, seed: int = 7, *, markets: int = 10, start_us: int | None = None,
                     step_us: int | None = None, first: int = 0,
                     rng: random.Random | None = None) -> tuple[list[RawFrame], list[Trade]]:
    """Realistic-looking Binance trades ``first`` to ``count - 1``: ``markets`` markets, 5 trades a
    frame. By default an hour ago, one round of the markets every 3 ms, so many share a millisecond;
    ``step_us`` spaces each trade from the previous one instead. Pass ``rng`` to generate a long tape
    in slices (trade ids, times and frames continue across the slices)."""
    rng = rng or random.Random(seed)
    start_us = int(time.time() * 1_000_000) - 3_600_000_000 if start_us is None else start_us
    frames: list[RawFrame] = []
    trades: list[Trade] = []
    for i in range(first, count):
        market = i % markets
        ts_us = start_us + (i * step_us if step_us is not None else (i // markets) * 3_000)
        frame_seq = i // 5 + 1
        price = f"{rng.randint(10_000, 99_999)}.{rng.randint(0, 99):02d}"
        qty = f"0.{rng.randint(1, 99_999):05d}"
        side: Side = "buy" if rng.random() < 0.5 else "sell"
        trades.append(Trade("binance", f"SYM{market}/USDT", f"SYM{market}USDT", i + 1, price, qty, side, ts_us,
                            ts_us + 800, "bench", frame_seq))
        if i % 5 == 0:
            frames.append(RawFrame("binance", "bench", frame_seq, ts_us + 800, '{"e":"trade"}' * 12, "", 5))
    return frames, trades


def _empty(client: Any) -> None:
    for table in LAYERS:
        client.command(f"TRUNCATE TABLE {table}")


def ingest(path: str, count: int, rounds: int = 3) -> dict[str, Any]:
    """The writer (dedup, validation, Arrow building, four inserts) against a direct Arrow insert of the
    same rows into the same tables, alternating so that both see the same machine load."""
    client = open_client(f"chdb://{path}", "bench")
    migrate.upgrade(client)
    frames, trades = synthetic_trades(count)
    frames_per_batch = max(1, len(frames) * BATCH // max(1, len(trades)))
    batches = [(frames[j * frames_per_batch:(j + 1) * frames_per_batch], trades[i:i + BATCH])
               for j, i in enumerate(range(0, len(trades), BATCH))]
    prebuilt = [(arrow.raw_frames(f), arrow.bronze(t), arrow.silver(t)) for f, t in batches]
    writer_rates: list[float] = []
    direct_rates: list[float] = []
    for _ in range(rounds):
        _empty(client)
        writer = WarehouseWriter(client, ValidationSettings())
        started = time.perf_counter()
        for f, t in batches:
            writer.write(f, t)
        writer_rates.append(len(trades) / (time.perf_counter() - started))

        _empty(client)
        started = time.perf_counter()
        for raw, bronze, silver in prebuilt:
            client.insert_arrow("raw_frames", raw)
            client.insert_arrow("bronze_trades", bronze)
            client.insert_arrow("silver_trades", silver)
        direct_rates.append(len(trades) / (time.perf_counter() - started))
    writer_rate, direct_rate = statistics.median(writer_rates), statistics.median(direct_rates)
    client.close()
    return {"trades": count, "batch": BATCH, "writer_trades_per_s": round(writer_rate),
            "direct_arrow_trades_per_s": round(direct_rate), "ratio": round(writer_rate / direct_rate, 3),
            "peak_rss_mb": round(peak_rss_mb())}


def generate(path: str, count: int, symbols: int = 10) -> dict[str, Any]:
    """Fill silver (and, through the view, gold) with ``count`` trades generated inside ClickHouse."""
    client = open_client(f"chdb://{path}", "bench")
    migrate.upgrade(client)
    _empty(client)
    sql = split_statements((package_files.files("ticklake.bench") / "generate_trades.sql").read_text("utf-8"))[0]
    # At least ~11 hours of one-minute candles per market, however few trades.
    step_us = max(100_000, 40_000_000_000 // max(1, count // symbols))
    start_us = int(time.time() * 1_000_000) - count // symbols * step_us
    started = time.perf_counter()
    chunk = 1_000_000
    for offset in range(0, count, chunk):
        client.command(sql, parameters={"symbols": symbols, "start_us": start_us, "step_us": step_us,
                                        "offset": offset, "count": min(chunk, count - offset)})
    seconds = time.perf_counter() - started
    client.command("OPTIMIZE TABLE gold_ohlcv FINAL")
    client.close()
    return {"trades": count, "seconds": round(seconds, 1), "rows_per_s": round(count / seconds),
            "peak_rss_mb": round(peak_rss_mb())}


def point_at_simulator(simulator: Any, settings: Settings) -> None:
    """Read the URLs a ``python -m ticklake.simulator`` process prints into ``settings.venues``."""
    assert simulator.stdout is not None
    for line in simulator.stdout:
        for field in ("ws_url", "rest_url"):
            marker = f"__{field.upper()}="
            if marker in line:
                name, url = line.strip().split("=", 1)
                setattr(getattr(settings.venues, name.split("__")[1].lower()), field, url)
        if line.startswith("Ctrl-C"):
            return


def latency(path: str, seconds: float, trades_per_second: float, kafka: KafkaSettings | None = None
            ) -> dict[str, Any]:
    """``ticklake up`` against the simulator at a steady total trade rate: receive time -> candle
    queryable (the silver insert, which updates gold through the view, has returned). The simulator
    runs in its own process, as a venue would be on another machine. With ``kafka``, every role
    still runs in this process, but through that broker (topics created beforehand)."""
    import asyncio
    import os
    import subprocess

    from ticklake.platform import Platform
    from ticklake.settings import BusSettings
    from ticklake.warehouse.writer import Plan

    settings = Settings(data_dir=path)
    if kafka is not None:
        settings.bus = BusSettings(kind="kafka", kafka=kafka)
        settings.metrics = settings.metrics.model_copy(update={"port": 0})  # any free port
    markets = sum(len(v.symbols) for v in settings.venues.enabled().values())
    env = {**os.environ, "TICKLAKE_SIMULATOR__TRADES_PER_SECOND": str(trades_per_second / markets)}
    simulator = subprocess.Popen([sys.executable, "-m", "ticklake.simulator", "--seed", "1"], env=env,
                                 stdout=subprocess.PIPE, text=True)
    try:
        point_at_simulator(simulator, settings)
        samples: list[float] = []
        waits: list[float] = []  # receive time -> its batch starts being written (the bus, batching)
        writes: list[float] = []  # per batch: plan and inserts
        write_started: dict[str, float] = {}

        def on_batch(plan: Plan) -> None:
            now_us = time.time() * 1_000_000
            started_us = write_started.pop(plan.token, now_us)
            samples.extend((now_us - t.received_us) / 1000 for t in plan.silver)
            waits.extend((started_us - t.received_us) / 1000 for t in plan.silver)
            writes.append((now_us - started_us) / 1000)

        def timing(writer: Any) -> None:
            plan_messages = writer.plan_messages

            def timed(messages: Sequence[Any]) -> Plan:
                started_us = time.time() * 1_000_000
                plan: Plan = plan_messages(messages)
                write_started[plan.token] = started_us
                return plan

            writer.plan_messages = timed

        async def run() -> None:
            platform = Platform(settings, serve_api=False, on_batch=on_batch)
            await platform.start()
            if platform.ingester is not None:
                timing(platform.ingester.writer)
            await asyncio.sleep(2.0)  # connect, subscribe, take the snapshots
            if kafka is not None:  # and join the consumer group: wait for the first batch, and a second more
                deadline = time.monotonic() + 60
                while platform.ingester is not None and not platform.ingester.status.batches \
                        and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)
            samples.clear()
            waits.clear()
            writes.clear()
            await asyncio.sleep(seconds)
            await platform.stop()

        asyncio.run(run())
    finally:
        simulator.terminate()
        simulator.wait(10)
    samples.sort()
    waits.sort()
    writes.sort()
    return {"seconds": seconds, "bus": settings.bus.kind, "trades": len(samples),
            "trades_per_s": round(len(samples) / seconds),
            "p50_ms": round(_quantile(samples, 0.50), 2), "p99_ms": round(_quantile(samples, 0.99), 2),
            "max_ms": round(samples[-1], 2) if samples else None,
            "until_write_p50_ms": round(_quantile(waits, 0.50), 2), "batches": len(writes),
            "write_p50_ms": round(_quantile(writes, 0.50), 2), "write_p99_ms": round(_quantile(writes, 0.99), 2),
            "peak_rss_mb": round(peak_rss_mb())}


def handlers(seconds: float, symbols_per_venue: int, trades_per_second: float) -> dict[str, Any]:
    """The feed handlers alone, many symbols per venue, against the simulator in another process:
    trades handled per second and the handler process's CPU time per trade."""
    import asyncio
    import os
    import subprocess
    from collections import Counter

    from ticklake.exchanges.feeds import run_feeds
    from ticklake.model import Message

    symbols = [f"S{i:03d}/USDT" for i in range(symbols_per_venue)]
    usd = [f"S{i:03d}/USD" for i in range(symbols_per_venue)]
    venues = {"binance": symbols, "kraken": usd, "coinbase": usd}
    env = {**os.environ, "TICKLAKE_SIMULATOR__TRADES_PER_SECOND": str(trades_per_second),
           **{f"TICKLAKE_VENUES__{name.upper()}__SYMBOLS": json.dumps(names) for name, names in venues.items()}}
    simulator = subprocess.Popen([sys.executable, "-m", "ticklake.simulator", "--seed", "2"], env=env,
                                 stdout=subprocess.PIPE, text=True)
    counts: Counter[str] = Counter()

    class CountingSink:
        async def publish(self, messages: Sequence[Message]) -> None:
            for message in messages:
                if isinstance(message.value, Trade):
                    counts[message.value.exchange] += 1

    try:
        settings = Settings(venues={name: {"symbols": names} for name, names in venues.items()})
        point_at_simulator(simulator, settings)

        async def run() -> tuple[float, float]:
            feeds = await run_feeds(settings, CountingSink())
            await asyncio.sleep(3.0)  # connect and subscribe every symbol
            counts.clear()
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
            await feeds.stop()
            return cpu, wall

        cpu, wall = asyncio.run(run())
    finally:
        simulator.terminate()
        simulator.wait(10)
    total = sum(counts.values())
    return {"symbols_per_venue": symbols_per_venue, "seconds": seconds,
            "trades_per_s": {name: round(n / wall) for name, n in sorted(counts.items())},
            "total_trades_per_s": round(total / wall), "cpu_share": round(cpu / wall, 3),
            "cpu_us_per_trade": round(cpu / max(1, total) * 1e6, 2)}


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def serve(path: str, port: int) -> None:
    import uvicorn

    from ticklake.api.app import create_app
    from ticklake.warehouse.reader import WarehouseReader

    client = open_client(f"chdb://{path}", "bench")
    reader = WarehouseReader(client)
    reader.ohlcv("binance", "SYM0/USDT", "1m", None, None, 500)  # the first query in a process is slow: warm it
    app = create_app(reader, Settings())
    print("serving", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    stage, path = sys.argv[1], sys.argv[2]  # (handlers takes no path: its arguments start here)
    if stage == "ingest":
        print(json.dumps(ingest(path, int(sys.argv[3]))))
    elif stage == "generate":
        print(json.dumps(generate(path, int(sys.argv[3]))))
    elif stage == "latency":
        print(json.dumps(latency(path, float(sys.argv[3]), float(sys.argv[4]))))
    elif stage == "handlers":
        print(json.dumps(handlers(float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))))
    elif stage == "serve":
        serve(path, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown stage {stage}")
