"""A connection runs on its ``ConnectionSpec`` and four callables, with no feed behind it: the
narrow interface between connection and feed (``exchanges/feeds/connection.py``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Set as AbstractSet

from ticklake.exchanges.feeds.backoff import Backoff
from ticklake.exchanges.feeds.connection import Connection, ConnectionSpec
from ticklake.exchanges.feeds.session import Direction
from ticklake.model import ParsedFrame
from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator
from ticklake.venues.kraken.feed import KrakenFeed
from ticklake.venues.kraken.mapper import parse_frame


async def test_a_connection_needs_only_its_spec_and_four_callables() -> None:
    async with Simulator(SimulatorSettings(seed=3, trades_per_second=50), {"kraken": ["BTC/USD"]}) as sim:
        feed_facts = KrakenFeed(["BTC/USD"], bus=None, ws_url=sim.ws_urls["kraken"])  # type: ignore[arg-type]
        spec = ConnectionSpec(
            exchange="kraken", url=sim.ws_urls["kraken"], natives=("BTC/USD",),
            subscribe_messages=tuple(feed_facts.subscribe_messages(["BTC/USD"])), connect_timeout_s=2.0,
            stale_timeout_s=5.0, rotate_after_s=None, rotation_overlap_s=0.1, send_interval_s=0.05,
            max_messages_per_s=None)
        frames: list[tuple[str, int, ParsedFrame]] = []
        recorded: list[Direction] = []
        slots = 0

        async def handle_frame(conn_id: str, frame_seq: int, received_us: int, data: bytes,
                               subscribed: AbstractSet[str]) -> tuple[ParsedFrame, str]:
            parsed = parse_frame(data, received_us, conn_id, frame_seq, subscribed=subscribed)
            frames.append((conn_id, frame_seq, parsed))
            return parsed, data.decode()

        async def connect_slot() -> None:
            nonlocal slots
            slots += 1

        def record(conn_id: str, url: str, t_us: int, payload: str | bytes, direction: Direction) -> None:
            recorded.append(direction)

        stopped = asyncio.Event()
        connection = Connection(spec, 0, Backoff(0.05, 0.2, 30.0, rng=random.Random(1)), handle_frame=handle_frame,
                                connect_slot=connect_slot, stopped=stopped, record=record)
        task = asyncio.create_task(connection.run())
        deadline = asyncio.get_running_loop().time() + 5
        while not any(parsed.trades for _, _, parsed in frames):
            assert asyncio.get_running_loop().time() < deadline, frames
            await asyncio.sleep(0.02)
        assert connection.state == "connected" and slots == 1
        assert [seq for _, seq, _ in frames] == list(range(1, len(frames) + 1))  # numbered in receive order
        assert "sent" in recorded and "recv" in recorded  # the subscribe message, the frames
        stopped.set()
        connection.close()
        await asyncio.wait_for(task, 5)
        assert connection.state == "stopped"
