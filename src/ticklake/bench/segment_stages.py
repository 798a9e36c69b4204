"""Bench stage ``segments``: where trade -> candle time goes, segment by segment (issue 14).

The platform (feeds, bus, writer; every role in one process, as ``ticklake up``) runs against the
simulator in another process at 500 trades/s, once on the embedded bus and once through a Kafka-API
broker, and each trade frame is followed through:

- **receive -> parse**: the frame's receive stamp (taken as the WebSocket delivers it) until the
  venue's mapper has returned its ``Trade`` objects: the wait in the connection's queue, then the parse
  (given apart);
- **publish**: the mapper's return until the bus took the frame and its trades (gap bookkeeping, the
  messages built, ``bus.publish``: the embedded bus's queues, or the Kafka producer's buffer);
- **bus -> ingest**: the bus took them until the ingester's batch that holds them starts being written
  (the batching window, and through the broker: linger, delivery, the consumer's fetch);
- **plan**, then the **inserts** of each layer, per batch: raw, bronze, silver + gold (one insert: the
  gold candles are written by the materialized view the silver insert fires, inside that insert, so
  no timestamp exists between them; their split is measured apart by replaying the same batches into a
  copy of silver with and without the view), and the bus positions through the broker;
- **queryable**: the batch committed until a candle read on a connection of its own (as the API's
  readers have) returns the trade's one-minute candle counting it.

How it is measured: the bench wraps, in its own process only, the instances the platform built (each
feed's mapper and bus, the ingester's ``write``, the writer's ``plan_messages`` and ``_insert_table``),
as the latency stage already wraps the writer; the platform's code is unchanged, so nothing is added
to its hot path in production. The wrappers cost a few microseconds a frame in this run.

    python -m ticklake.bench.segment_stages segments PATH SECONDS TRADES_PER_SECOND [kafka]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ticklake.settings import KafkaSettings, Settings

SEGMENTS = ("receive -> parse", "of which the parse", "publish", "bus -> ingest", "plan", "raw insert",
            "bronze insert", "silver + gold insert", "bus positions insert", "queryable",
            "receive -> committed", "receive -> queryable")
TABLE_SEGMENTS = {"raw_frames": "raw insert", "bronze_trades": "bronze insert", "silver_trades": "silver + gold insert",
                  "bus_positions": "bus positions insert"}
REPLAYED_BATCHES = 200


def _quantiles(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0, "p50_ms": None, "p99_ms": None}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99)}


class _Probe:
    """Timestamps of each trade frame on its way, keyed by (exchange, connection, frame number)."""

    def __init__(self) -> None:
        self.active = False
        self.frames: dict[tuple[str, str, int], list[float]] = {}  # [received, parse start, parsed, published]
        self.segments: dict[str, list[float]] = defaultdict(list)  # seconds
        self.batch_tables: dict[str, float] = {}  # the batch being written: table -> seconds
        self.silver_tables: list[Any] = []  # the silver rows of the first batches, replayed afterwards
        self.reads_again = 0  # candle reads that did not yet count the batch just committed
        self.lock = threading.Lock()

    def timed_parser(self, exchange: str, parser: Callable[..., Any]) -> Callable[..., Any]:
        frames = self.frames

        def parse(data: bytes, received_us: int, conn_id: str = "", frame_seq: int = 0, **kwargs: Any) -> Any:
            started = time.time()
            parsed = parser(data, received_us, conn_id, frame_seq, **kwargs)
            if parsed.trades and self.active:
                frames[exchange, conn_id, frame_seq] = [received_us / 1e6, started, time.time()]
            return parsed

        return parse

    def timed_sink(self, exchange: str, sink: Any) -> Any:
        probe = self

        class Timed:
            async def publish(self, messages: Sequence[Any]) -> None:
                await sink.publish(messages)
                first = messages[0].value if messages else None
                entry = probe.frames.get((exchange, getattr(first, "conn_id", ""), getattr(first, "frame_seq", -1)))
                if entry is not None and len(entry) == 3:
                    entry.append(time.time())

            def __getattr__(self, name: str) -> Any:
                return getattr(sink, name)

        return Timed()


def segments(path: str, seconds: float, trades_per_second: float, kafka: KafkaSettings | None = None
             ) -> dict[str, Any]:
    from ticklake.bench.stages import point_at_simulator
    from ticklake.model import Trade
    from ticklake.platform import Platform
    from ticklake.settings import BusSettings
    from ticklake.warehouse.client import open_client
    from ticklake.warehouse.reader import WarehouseReader
    from ticklake.warehouse.writer import Plan

    settings = Settings(data_dir=path)
    if kafka is not None:
        settings.bus = BusSettings(kind="kafka", kafka=kafka)
        settings.metrics = settings.metrics.model_copy(update={"port": 0})
    settings.completeness = settings.completeness.model_copy(update={"enabled": False})  # no extra reads
    markets = sum(len(v.symbols) for v in settings.venues.enabled().values())
    env = {**os.environ, "TICKLAKE_SIMULATOR__TRADES_PER_SECOND": str(trades_per_second / markets)}
    simulator = subprocess.Popen([sys.executable, "-m", "ticklake.simulator", "--seed", "5"], env=env,
                                 stdout=subprocess.PIPE, text=True)
    probe = _Probe()
    stored: dict[tuple[str, str, int], int] = defaultdict(int)  # (exchange, symbol, minute) -> trades stored
    reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-read")
    reading = threading.Event()  # one candle read at a time: a read never queues behind another
    local = threading.local()

    def on_batch(plan: Plan) -> None:
        for trade in plan.silver:
            stored[trade.exchange, trade.symbol, trade.ts_us // 60_000_000] += 1

    def candle(key: tuple[str, str, int]) -> Any:
        if not hasattr(local, "reader"):  # a connection of its own, on this thread, as an API reader has
            local.reader = WarehouseReader(open_client(settings.resolved_warehouse_url, settings.database))
        exchange, symbol, minute = key
        start = datetime.fromtimestamp(minute * 60, UTC)
        rows = local.reader.ohlcv_rows(exchange, symbol, "1m", start, start + timedelta(minutes=1), 1)
        return rows[0] if rows else None

    def read_until_counted(key: tuple[str, str, int], expected: int, committed: float, received: list[float]) -> None:
        try:
            deadline = time.time() + 5
            while time.time() < deadline:
                row = candle(key)
                if row is not None and int(row[8]) >= expected:
                    now = time.time()
                    with probe.lock:
                        probe.segments["queryable"].append(now - committed)
                        probe.segments["receive -> queryable"] += [now - r for r in received]
                    return
                probe.reads_again += 1  # not there yet at the first read: it was not visible at commit
                time.sleep(0.001)
        finally:
            reading.clear()

    def wrap(platform: Any) -> None:
        assert platform.feeds is not None and platform.ingester is not None
        for name, feed in platform.feeds.feeds.items():
            feed.frames.parser = probe.timed_parser(name, feed.frames.parser)
            feed.frames.bus = probe.timed_sink(name, feed.frames.bus)
        ingester = platform.ingester
        writer = ingester.writer
        write, plan_messages, insert_table = ingester.write, writer.plan_messages, writer._insert_table

        async def timed_write(messages: Sequence[Any]) -> Plan:
            batch_at = time.time()
            probe.batch_tables = {}
            plan: Plan = await write(messages)
            committed = time.time()
            if not probe.active:
                return plan
            received: list[float] = []
            for message in messages:
                trade = message.value
                if not isinstance(trade, Trade):
                    continue
                entry = probe.frames.get((trade.exchange, trade.conn_id, trade.frame_seq))
                if entry is None or len(entry) < 4:
                    continue
                got, parse_start, parsed, published = entry
                probe.segments["receive -> parse"].append(parsed - got)
                probe.segments["of which the parse"].append(parsed - parse_start)
                probe.segments["publish"].append(published - parsed)
                probe.segments["bus -> ingest"].append(batch_at - published)
                probe.segments["receive -> committed"].append(committed - got)
                received.append(got)
            for table, spent in probe.batch_tables.items():
                probe.segments[TABLE_SEGMENTS.get(table, table)].append(spent)
            if plan.silver and received and not reading.is_set():
                reading.set()
                last = plan.silver[-1]
                key = (last.exchange, last.symbol, last.ts_us // 60_000_000)
                reads.submit(read_until_counted, key, stored[key], committed, received)
            if "silver_trades" in plan.tables and len(probe.silver_tables) < REPLAYED_BATCHES:
                probe.silver_tables.append(plan.tables["silver_trades"])
            return plan

        def timed_plan(messages: Sequence[Any]) -> Plan:
            started = time.perf_counter()
            plan: Plan = plan_messages(messages)
            probe.batch_tables["plan"] = time.perf_counter() - started
            return plan

        def timed_insert(plan: Plan, table: str) -> None:
            started = time.perf_counter()
            insert_table(plan, table)
            if table in plan.tables:
                probe.batch_tables[table] = time.perf_counter() - started

        ingester.write = timed_write
        writer.plan_messages = timed_plan
        writer._insert_table = timed_insert

    async def run() -> None:
        platform = Platform(settings, serve_api=False, on_batch=on_batch)
        await platform.start()
        wrap(platform)
        await asyncio.sleep(2.0)  # connect, subscribe, take the snapshots
        if kafka is not None:  # and join the consumer group: the first batch, and a second more
            deadline = time.monotonic() + 60
            while platform.ingester is not None and not platform.ingester.status.batches \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
        # The first query of a connection is slow (stack.md): warm the reading connection first.
        await asyncio.get_running_loop().run_in_executor(reads, candle, ("binance", "BTC/USDT", 0))
        probe.active = True
        await asyncio.sleep(seconds)
        probe.active = False
        await asyncio.sleep(0.5)  # the last candle read
        await platform.stop()

    try:
        point_at_simulator(simulator, settings)
        asyncio.run(run())
    finally:
        simulator.terminate()
        simulator.wait(10)
        reads.shutdown(wait=True)
    report = {"bus": settings.bus.kind, "seconds": seconds, "trades_per_s_asked": trades_per_second,
              "trades": len(probe.segments["receive -> committed"]),
              "batches": len(probe.segments["silver + gold insert"]), "reads_again": probe.reads_again,
              "segments": {name: _quantiles(probe.segments[name]) for name in SEGMENTS if probe.segments.get(name)}}
    report["gold_view"] = _gold_split(settings, probe.silver_tables)
    return report


def _gold_split(settings: Settings, tables: list[Any]) -> dict[str, Any]:
    """The silver insert with and without the gold view: the batches of the run (their silver rows),
    inserted alternately into two copies of silver, one with a copy of the view into a copy of gold."""
    from ticklake.warehouse.client import open_client

    if not tables:
        return {"batches": 0}
    client = open_client(settings.resolved_warehouse_url, settings.database)
    database = settings.database
    try:
        view = str(client.query("SELECT create_table_query FROM system.tables WHERE database = {d:String} "
                                "AND name = 'gold_ohlcv_mv'", parameters={"d": database}).result_rows[0][0])
        client.command("CREATE TABLE seg_silver_plain AS silver_trades")
        client.command("CREATE TABLE seg_silver_viewed AS silver_trades")
        client.command("CREATE TABLE seg_gold AS gold_ohlcv")
        client.command(view.replace(f"{database}.gold_ohlcv_mv", f"{database}.seg_gold_mv")
                       .replace(f"TO {database}.gold_ohlcv", f"TO {database}.seg_gold")
                       .replace(f"FROM {database}.silver_trades", f"FROM {database}.seg_silver_viewed"))
        spent: dict[str, list[float]] = {"plain": [], "viewed": []}
        for i, rows in enumerate(tables):
            for kind in (("plain", "viewed") if i % 2 == 0 else ("viewed", "plain")):
                started = time.perf_counter()
                client.insert_arrow(f"seg_silver_{kind}", rows)
                spent[kind].append(time.perf_counter() - started)
        gold_rows = client.query("SELECT count() FROM seg_gold").result_rows[0][0]
    finally:
        client.close()
    plain, viewed = _quantiles(spent["plain"]), _quantiles(spent["viewed"])
    return {"batches": len(tables), "silver_alone": plain, "silver_and_gold": viewed, "gold_rows": int(gold_rows),
            "gold_p50_ms": round(viewed["p50_ms"] - plain["p50_ms"], 3)}


# --- the bench side ------------------------------------------------------------------------------
MODULE = "ticklake.bench.segment_stages"
PER_BATCH = frozenset({"plan", "raw insert", "bronze insert", "silver + gold insert", "bus positions insert",
                       "queryable"})


def run_segment_stages(settings: Settings, workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    """The stage on the embedded bus, then through a broker (the configured one, or a noida-db of its own;
    skipped without one), at 500 trades/s for ``sizes["segments_s"]`` seconds each."""
    from ticklake.bench import _stage
    from ticklake.bench.broker import bench_broker, unavailable
    from ticklake.bus import topics_for

    seconds = str(sizes["segments_s"])
    report: dict[str, Any] = {"load_average_before": round(os.getloadavg()[0], 2)}
    print("  segments: embedded bus ...", file=sys.stderr, flush=True)
    report["embedded"] = _stage("segments", str(workdir / "segments-embedded"), seconds, "500", module=MODULE)
    reason = unavailable(settings)
    if reason is not None:
        report["kafka"] = {"skipped": reason}
        return report
    print("  segments: Kafka bus ...", file=sys.stderr, flush=True)
    stage_dir = workdir / "segments-kafka"
    stage_dir.mkdir(parents=True, exist_ok=True)
    try:
        with bench_broker(settings, stage_dir) as broker:
            exchanges = list(settings.venues.enabled())
            present = [] if broker.ours else broker.existing(topics_for(exchanges))
            if present:
                report["kafka"] = {"skipped": f"the configured broker already has {', '.join(present)}: this stage "
                                              "would mix simulated trades into them"}
            else:
                broker.create_topics(topics_for(exchanges))
                report["kafka"] = _stage("segments", str(stage_dir / "data"), seconds, "500", "kafka",
                                         module=MODULE, env=broker.env())
                report["kafka"]["broker"] = broker.description
    except Exception as exc:  # reported, as the other broker stages do; the rest of the bench goes on
        report["kafka"] = {"error": f"{type(exc).__name__}: {exc}"[-3000:]}
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    return report


def segment_lines(report: dict[str, Any]) -> list[str]:
    s = report["segments"]
    embedded, kafka = s["embedded"], s["kafka"]
    lines = ["", f"where trade -> candle time goes, per segment, at {embedded['trades_per_s_asked']:g} trades/s for "
                 f"{embedded['seconds']:g} s (every role in one process; load average {s['load_average_before']} "
                 f"before): p50 / p99 in ms"]
    if "segments" not in kafka:
        lines.append(f"  through the broker: {kafka.get('skipped') or kafka.get('error', '').splitlines()[-1]}")
    lines.append(f"  {'segment':34s} {'embedded bus':>20s} {'through the broker':>20s}")

    def cell(side: dict[str, Any], name: str) -> str:
        q = side.get("segments", {}).get(name)
        return f"{q['p50_ms']:>9} / {q['p99_ms']:<8}" if q else f"{'':>9} - {'':<8}"

    for name in SEGMENTS:
        unit = " (per batch)" if name in PER_BATCH else ""
        lines.append(f"  {name + unit:34s} {cell(embedded, name):>20s} {cell(kafka, name):>20s}")
    for label, side in (("embedded", embedded), ("broker", kafka)):
        gold = side.get("gold_view")
        if gold and gold.get("batches"):
            lines.append(f"  {label}: the silver + gold insert split by replaying its {gold['batches']} batches into "
                         f"copies of silver: silver alone p50 {gold['silver_alone']['p50_ms']} ms, with the gold view "
                         f"{gold['silver_and_gold']['p50_ms']} ms: gold ~{gold['gold_p50_ms']} ms; "
                         f"{side['trades']:,} trades in {side['batches']} batches, {side['reads_again']} candle "
                         "reads had to read again")
    return lines


if __name__ == "__main__":
    if sys.argv[1] != "segments":
        raise SystemExit(f"unknown stage {sys.argv[1]}")
    kafka_settings = None
    if len(sys.argv) > 5 and sys.argv[5] == "kafka":
        from ticklake.bench.bus_stages import bench_kafka

        kafka_settings = bench_kafka()
    print(json.dumps(segments(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), kafka_settings)))
