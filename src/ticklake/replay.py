"""Recording live (or simulated) sessions to a file, and replaying recordings through the pipeline.

A replay goes through exactly the path live frames take: mapper -> bus -> ingester -> every layer.
Frames keep their recorded receive time and connection id, and get their position in the recording
as frame number, so replaying the same file twice stores nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from ticklake.bus import MemoryBus, Message, raw_topic, topics_for, trades_topic
from ticklake.exchanges.feeds import run_feeds
from ticklake.exchanges.mappers import parser_for
from ticklake.exchanges.recording import SessionWriter, read_session
from ticklake.model import EXCHANGES, RawFrame
from ticklake.settings import Settings
from ticklake.warehouse.ingest import Ingester
from ticklake.warehouse.repair import repair
from ticklake.warehouse.writer import Plan, WarehouseWriter

log = logging.getLogger("ticklake.replay")


def open_recorder(path: Path) -> SessionWriter:
    """A recording of every frame the feeds send and receive (ticklake's session format)."""
    return SessionWriter(path)


async def record(settings: Settings, path: Path, simulate: bool, seconds: float | None) -> None:
    """Record every frame of the configured feeds to ``path``; nothing is stored in the warehouse."""
    from ticklake.simulator.server import Simulator

    sink = open_recorder(path)
    simulator: Simulator | None = None
    try:
        if simulate:
            simulator = Simulator.from_settings(settings)
            await simulator.start()
            settings = simulator.settings_for(settings)
        feeds = await run_feeds(settings, MemoryBus(), sink)
        log.info("recording to %s%s", path, f" for {seconds:g} s" if seconds else " (Ctrl-C to stop)")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(seconds if seconds is not None else float("inf"))
        await feeds.stop()
    finally:
        if simulator is not None:
            await simulator.close()
        sink.close()


async def replay(settings: Settings, paths: list[Path]) -> dict[str, Any]:
    """Replay recordings into the warehouse; returns what was stored."""
    from ticklake.platform import open_warehouse

    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse")
    client = await loop.run_in_executor(executor, open_warehouse, settings)
    summary: Counter[str] = Counter()
    dead_rules: Counter[str] = Counter()

    def account(plan: Plan) -> None:
        summary["stored_trades"] += len(plan.bronze)
        summary["duplicates"] += plan.duplicates
        summary["silver_trades"] += len(plan.silver)
        dead_rules.update(rule for _, rule, _, _ in plan.dead)

    try:
        writer = WarehouseWriter(client, settings.validation)
        lookback = timedelta(minutes=settings.ingest.repair_lookback_minutes)
        await loop.run_in_executor(executor, repair, writer, lookback)
        bus = MemoryBus(settings.ingest.bus_queue_size)
        source = bus.source(topics_for(EXCHANGES), settings.ingest.max_batch_rows,
                            settings.ingest.flush_interval_ms / 1000)
        ingester = Ingester(source, writer, settings.ingest, EXCHANGES, executor=executor, on_batch=account)
        ingesting = asyncio.create_task(ingester.run())
        for path in paths:
            await _publish_recording(path, bus, summary)
        await ingester.drain(timeout_s=float("inf"))
        ingesting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingesting
    finally:
        executor.shutdown(wait=True)
        client.close()
    return {**summary, "dead_letters": dict(dead_rules)}


async def _publish_recording(path: Path, bus: MemoryBus, summary: Counter[str]) -> None:
    frame_numbers: Counter[str] = Counter()
    for recorded in read_session(path):
        if recorded.exchange not in EXCHANGES:
            summary["frames_skipped_unknown_venue"] += 1
            continue
        frame_numbers[recorded.conn_id] += 1
        seq = frame_numbers[recorded.conn_id]
        payload = recorded.payload if isinstance(recorded.payload, str) else recorded.payload.decode("latin-1")
        parsed = parser_for(recorded.exchange)(payload, recorded.received_us, recorded.conn_id, seq)
        summary["frames"] += 1
        summary["parse_errors"] += bool(parsed.error)
        summary["trades"] += len(parsed.trades)
        frame = RawFrame(recorded.exchange, recorded.conn_id, seq, recorded.received_us, payload, parsed.error,
                         len(parsed.trades))
        messages = [Message(raw_topic(recorded.exchange), "", frame)]
        messages += [Message(trades_topic(t.exchange), t.symbol or t.native_symbol, t) for t in parsed.trades]
        await bus.publish(messages)
