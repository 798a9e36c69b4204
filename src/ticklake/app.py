"""The embedded platform in one process: feeds -> bus -> ingester -> ClickHouse -> API.

``Platform`` is what ``ticklake up`` runs. The embedded warehouse (chdb) can be opened by one process
only, so this process owns it and everything else reaches the data through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import msgspec
import uvicorn
from clickhouse_connect.driver.client import Client

from ticklake.api.app import create_app
from ticklake.bus import MemoryBus
from ticklake.exchanges.feeds import FeedSet, FrameRecorder, run_feeds
from ticklake.model import ResumePoint
from ticklake.ops import metrics
from ticklake.settings import Settings
from ticklake.simulator.server import Simulator
from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.ingest import Ingester
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.repair import repair
from ticklake.warehouse.writer import Plan, WarehouseWriter

log = logging.getLogger("ticklake")


class WarehouseInUseError(RuntimeError):
    pass


def connect_warehouse(settings: Settings) -> Client:
    """Open the warehouse; a clear error when another process holds the embedded path."""
    url = settings.resolved_warehouse_url
    try:
        client = open_client(url, settings.database, settings.warehouse_max_memory_bytes)
    except Exception as exc:
        if url.startswith("chdb:") and ("EmbeddedServer" in str(exc) or "lock" in str(exc).lower()):
            raise WarehouseInUseError(
                f"the embedded warehouse at {url} is in use by another process (chdb allows one process per "
                "data directory): stop the other ticklake process or set TICKLAKE_DATA_DIR elsewhere"
            ) from exc
        raise
    return client


def open_warehouse(settings: Settings) -> Client:
    """Open, migrate and set retention."""
    client = connect_warehouse(settings)
    migrate.upgrade(client)
    migrate.apply_retention(client, settings.retention.model_dump())
    return client


class Platform:
    def __init__(self, settings: Settings, simulate: bool = False, recorder: FrameRecorder | None = None,
                 serve_api: bool = True, on_batch: Callable[[Plan], None] | None = None) -> None:
        self.settings = settings
        self.on_batch = on_batch
        self.simulate = simulate
        self.recorder = recorder
        self.serve_api = serve_api
        self.simulator: Simulator | None = None
        self.client: Client | None = None
        self.feeds: FeedSet | None = None
        self.ingester: Ingester | None = None
        self.api_server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse")
        self.stopped = asyncio.Event()

    async def start(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        # Everything that touches chdb runs on the one warehouse thread.
        self.client = client = await loop.run_in_executor(self._executor, open_warehouse, settings)
        writer = WarehouseWriter(client, settings.validation)
        lookback = timedelta(minutes=settings.ingest.repair_lookback_minutes)
        await loop.run_in_executor(self._executor, repair, writer, lookback)

        if self.simulate:
            self.simulator = Simulator.from_settings(settings)
            await self.simulator.start()
            self.settings = settings = self.simulator.settings_for(settings)
            log.info("simulated exchanges on loopback: %s", self.simulator.ws_urls)

        bus = MemoryBus(settings.ingest.bus_queue_size)
        exchanges = list(settings.venues.enabled())
        self.ingester = Ingester(bus, writer, settings.ingest, exchanges, executor=self._executor,
                                 on_batch=self.on_batch)
        self._tasks.append(asyncio.create_task(self.ingester.run(), name="ingester"))
        # Each feed resumes from the newest stored trade of its markets: the downtime shows as a gap
        # in the trade ids and is backfilled from the venue's REST API.
        stored = await loop.run_in_executor(self._executor, WarehouseReader(client).resume_points)
        resume = {key: ResumePoint(trade_id, ts_us) for key, (trade_id, ts_us) in stored.items()}
        self.feeds = await run_feeds(settings, bus, self.recorder, resume=resume)
        venues = ", ".join(f"{name} ({len(v.symbols)} symbols)" for name, v in settings.venues.enabled().items())
        log.info("warehouse %s (database %s); venues: %s", settings.resolved_warehouse_url, settings.database,
                 venues or "none enabled")

        if self.serve_api:
            reader = WarehouseReader(client)
            markets = [(name, symbol) for name, venue in settings.venues.enabled().items() for symbol in venue.symbols]
            app = create_app(reader, settings, health=self._health_sources(bus), configured_markets=markets)
            config = uvicorn.Config(app, host=settings.api.host, port=settings.api.port, log_level="warning",
                                    lifespan="off")
            self.api_server = uvicorn.Server(config)
            self._tasks.append(asyncio.create_task(self.api_server.serve(), name="api"))
            log.info("API on http://%s:%d (docs at /docs)", settings.api.host, settings.api.port)

    def _health_sources(self, bus: MemoryBus) -> dict[str, Any]:
        def feeds() -> dict[str, object]:
            statuses = self.feeds.statuses() if self.feeds else {}
            venues = {name: _status_dict(status) for name, status in statuses.items()}
            connected = [name for name, status in statuses.items() if str(status.state) == "connected"]
            state = "ok" if len(connected) == len(statuses) else ("degraded" if connected else "down")
            return {"status": state if statuses else "degraded", "venues": venues}

        def ingest() -> dict[str, object]:
            return self.ingester.status.health() if self.ingester else {"status": "down"}

        def bus_health() -> dict[str, object]:
            depth = bus.depth()
            metrics.BUS_DEPTH.set(depth)
            full = depth >= self.settings.ingest.bus_queue_size
            return {"status": "degraded" if full else "ok", "depth": depth}

        return {"feeds": feeds, "ingest": ingest, "bus": bus_health}

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stopped.set)
        await self.start()
        await self.stopped.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop taking frames, write what the bus still holds, then close everything."""
        if self.feeds is not None:
            await self.feeds.stop()
        if self.ingester is not None:
            await self.ingester.drain()
        if self.api_server is not None:
            self.api_server.should_exit = True
        for task in self._tasks:
            if task.get_name() != "api":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.simulator is not None:
            await self.simulator.close()
        self._executor.shutdown(wait=True)  # an insert in flight finishes before the engine closes
        if self.client is not None:
            self.client.close()
        log.info("stopped")


def _status_dict(status: Any) -> dict[str, object]:
    result: dict[str, object] = msgspec.to_builtins(status)
    return result
