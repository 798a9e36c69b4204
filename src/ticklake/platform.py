"""The platform's roles: feeds -> bus -> ingester -> ClickHouse -> API, and ClickHouse -> Iceberg.

``Platform`` is what ``ticklake up`` (every role) and ``ticklake feed | ingest | api`` (one role each,
with a Kafka bus) run. The embedded warehouse (chdb) can be opened by one process only: the process
that ingests into it also serves its API, and everything else reaches the data through that API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import prometheus_client
import uvicorn
from clickhouse_connect.driver.client import Client

from ticklake.api.app import create_app
from ticklake.api.auth import key_store_for
from ticklake.api.cursor import load_cursor_secret
from ticklake.api.http import BoundedH11Protocol
from ticklake.api.live import LiveHub
from ticklake.bus import MemoryBus, topics_for
from ticklake.bus.base import BatchSource, PartitionKey, Position
from ticklake.exchanges.feeds import FeedSet, FrameRecorder, run_feeds
from ticklake.exchanges.gaps import Resume, holes
from ticklake.exchanges.resume import TailReader, broker_resume_points, held_trades
from ticklake.lake.cold_reader import ColdReader
from ticklake.lake.offloader import Offloader
from ticklake.lake.worker import SettingsCatalog
from ticklake.model import Message, MessageSink, Trade, trades_topic
from ticklake.ops import metrics
from ticklake.ops.code_pages import release_code_pages
from ticklake.ops.redact import mask_url
from ticklake.settings import Settings
from ticklake.venues import to_native
from ticklake.warehouse import migrate
from ticklake.warehouse.changes import StoredChanges
from ticklake.warehouse.client import is_embedded, open_client
from ticklake.warehouse.completeness import CompletenessCheck
from ticklake.warehouse.ingest import Ingester
from ticklake.warehouse.pool import ClientPool, read_limits
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.repair import repair
from ticklake.warehouse.writer import Plan, WarehouseWriter

if TYPE_CHECKING:  # confluent-kafka is loaded only when the Kafka bus is used
    from ticklake.bus.kafka import KafkaProducerBus, KafkaSource
    from ticklake.lake.offloader import Offloader

log = logging.getLogger("ticklake")


# A feed's producer failing for good is renewed; failing again each time within the window, more than
# this many times in a row, it stops the process.
_MAX_RENEWALS = 5
_RENEWAL_WINDOW_S = 60.0
_BROKER_CHECK_FLUSH_S = 30.0


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
                "data directory): stop the other ticklake process, set TICKLAKE_DATA_DIR elsewhere, or, in "
                "distributed mode, serve the API from the ingesting process (`ticklake ingest --api`)"
            ) from exc
        raise
    return client


def open_warehouse(settings: Settings) -> Client:
    """Open, migrate and set retention."""
    client = connect_warehouse(settings)
    migrate.upgrade(client)
    migrate.apply_retention(client, settings.retention.model_dump())
    return client


ROLES = ("feed", "ingest", "api", "offload")
# The roles the embedded bus ties together in one process. The offloader needs no bus: it reads the
# warehouse, so it may run alone (`ticklake offload`) wherever the warehouse can be opened.
PIPELINE_ROLES = frozenset({"feed", "ingest", "api"})


def default_roles(settings: Settings) -> frozenset[str]:
    """Every role; the offloader only when the cold tier is enabled."""
    return frozenset(ROLES) if settings.lake.enabled else frozenset(ROLES) - {"offload"}


class RolesError(ValueError):
    """Roles that cannot run as asked (the message says what to change)."""


def subscribed_natives(settings: Settings) -> dict[str, frozenset[str]]:
    """Per enabled venue, the native symbols its feed subscribes to (what a re-parsed frame may hold)."""
    return {name: frozenset(to_native(name, symbol) for symbol in venue.symbols)
            for name, venue in settings.venues.enabled().items()}


def check_roles(settings: Settings, roles: frozenset[str]) -> None:
    unknown = roles - set(ROLES)
    if unknown or not roles:
        raise RolesError(f"unknown roles {sorted(unknown)}: choose from {', '.join(ROLES)}")
    pipeline = roles & PIPELINE_ROLES
    # The API alone needs no bus: it serves what the warehouse holds (`ticklake api` after a replay).
    if settings.bus.kind == "embedded" and pipeline and pipeline not in (PIPELINE_ROLES, {"api"}):
        raise RolesError("the embedded bus connects the feed and ingest roles inside one process: run `ticklake "
                         "up` (or `ticklake api` to serve what is stored), or set bus.kind = \"kafka\" "
                         "(TICKLAKE_BUS__KIND=kafka) to run roles as separate processes")


class Platform:
    """Some or all of the roles in this process: ``feed`` (venues -> bus), ``ingest`` (bus ->
    warehouse), ``api`` (warehouse -> HTTP) and ``offload`` (warehouse -> Iceberg). With the embedded
    bus the first three run together; with a Kafka bus any subset, in as many processes as wanted
    (docs/deploy.md). ``offload`` is left out of the default when ``lake.enabled`` is off."""

    def __init__(self, settings: Settings, recorder: FrameRecorder | None = None,
                 serve_api: bool = True, on_batch: Callable[[Plan], None] | None = None,
                 roles: frozenset[str] | None = None) -> None:
        roles = default_roles(settings) if roles is None else roles
        check_roles(settings, roles)
        self.roles = roles if serve_api else roles - {"api"}
        self.settings = settings
        self.on_batch = on_batch
        self.recorder = recorder
        self.client: Client | None = None
        self.feeds: FeedSet | None = None
        self.ingester: Ingester | None = None
        self.producer: KafkaProducerBus | None = None
        self.check_producer: KafkaProducerBus | None = None  # the completeness check's, with a Kafka bus
        self.completeness: CompletenessCheck | None = None
        self.source: KafkaSource | None = None
        self.api_server: uvicorn.Server | None = None
        # Checked before anything starts: an API beyond loopback without keys refuses to (api/auth.py).
        self.api_keys = key_store_for(settings) if "api" in self.roles else None
        self.read_pool: ClientPool | None = None
        # The markets each stored batch touched: the API, in this process, keeps candles while true.
        self.changes = StoredChanges()
        self.offloader: Offloader | None = None
        self.live: LiveHub | None = None  # the stream's hub, where this process ingests and serves
        self.metrics_port: int | None = None
        self._metrics_server: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse")
        self.stopped = asyncio.Event()
        self.exit_code = 0

    @property
    def kafka(self) -> bool:
        return self.settings.bus.kind == "kafka"

    async def start(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        roles = self.roles
        writer: WarehouseWriter | None = None
        if roles & {"ingest", "api", "offload"}:
            # Everything that touches chdb runs on the one warehouse thread. The ingest role owns the
            # schema; an API-only process just connects.
            opener = open_warehouse if "ingest" in roles else connect_warehouse
            self.client = client = await loop.run_in_executor(self._executor, opener, settings)
            writer = WarehouseWriter(client, settings.validation, self.changes)
            if "ingest" in roles and not self.kafka:
                # With a Kafka bus, an interrupted batch is completed from the bus instead (positions.py):
                # a global repair could race other ingesters writing the same warehouse.
                lookback = timedelta(minutes=settings.ingest.repair_lookback_minutes)
                await loop.run_in_executor(self._executor, repair, writer, lookback, subscribed_natives(settings))

        exchanges = list(settings.venues.enabled())
        memory_bus = None if self.kafka else MemoryBus(settings.ingest.bus_queue_size)
        if "ingest" in roles:
            assert writer is not None
            # Batches of at most max_batch_rows, each due once its oldest message waited flush_interval_ms.
            topics, max_batch, max_wait_s = (topics_for(exchanges), settings.ingest.max_batch_rows,
                                             settings.ingest.flush_interval_ms / 1000)
            ingester: Ingester | None = None
            source: BatchSource
            if memory_bus is not None:
                source = memory_bus.source(topics, max_batch, max_wait_s)
            else:
                from ticklake.bus.kafka import KafkaSource

                def positions(keys: list[PartitionKey]) -> dict[PartitionKey, Position]:
                    assert ingester is not None
                    return ingester.load_positions(keys)

                source = self.source = KafkaSource(settings.bus.kafka, topics, positions, max_batch, max_wait_s)
            ingester = self.ingester = Ingester(source, writer, settings.ingest, exchanges, executor=self._executor,
                                                on_batch=self._committed)
            self._tasks.append(asyncio.create_task(self.ingester.run(), name="ingester"))

        if "feed" in roles:
            sink: MessageSink
            if memory_bus is not None:
                # The live stream sees trades as they enter the bus: open candles move before the write.
                sink = _Tapped(memory_bus, self._arrived)
            else:
                from ticklake.bus.kafka import KafkaProducerBus

                sink = self.producer = KafkaProducerBus(settings.bus.kafka)
                self._tasks.append(asyncio.create_task(self._watch_producer(), name="producer-watch"))
            # Each feed resumes from the newest trade of its markets (stored, or on the bus): the
            # downtime shows as a gap in the trade ids and is backfilled from the venue's REST API,
            # and so are the holes below it (a backfill a stop cut short, messages a broker lost).
            resume = await self._resume_points(writer)
            self.feeds = await run_feeds(settings, sink, self.recorder,
                                         resume={key: r.point for key, r in resume.items()})
            held_by = "what the broker holds" if self.kafka else "what was stored"
            for (exchange, _native), market in resume.items():
                for gap in market.holes:
                    self.feeds.refill(exchange, gap, held_by)
            venues = ", ".join(f"{name} ({len(v.symbols)} symbols)" for name, v in settings.venues.enabled().items())
            log.info("venues: %s", venues or "none enabled")
        if self.client is not None:
            log.info("warehouse %s (database %s)", mask_url(settings.resolved_warehouse_url), settings.database)
        if "ingest" in roles and settings.completeness.enabled:
            self._start_completeness(memory_bus)

        if "offload" in roles:
            assert self.client is not None
            self.offloader = Offloader(settings, self.client, SettingsCatalog(settings.lake, settings.data_dir),
                                       warehouse_executor=self._executor, worker_kind=settings.lake.worker)
            self._tasks.append(asyncio.create_task(self.offloader.run_forever(), name="offload"))
            log.info("cold tier: %s catalog, offload every %.0f s", settings.lake.catalog,
                     settings.lake.offload_interval_s)

        if "api" in roles:
            assert self.client is not None
            # The API reads through connections of its own, beside the writer's, never behind it: one per
            # read slot (api/admission.py), and one more for /health's ping, which is never refused.
            api = settings.api
            limits = read_limits(api.query_timeout_s, api.query_max_memory_bytes, api.read_nice)
            opener = partial(open_client, settings.resolved_warehouse_url, settings.database,
                             settings.warehouse_max_memory_bytes, limits)
            # (And one for the live stream's candle reads, where this process ingests: api/live.py.)
            live_reads = 1 if "ingest" in roles else 0
            # (And one per export slot: an export reads chunk after chunk for minutes, api/export.py.)
            self.read_pool = await loop.run_in_executor(self._executor, partial(
                ClientPool.open, api.max_concurrent_reads + 1 + live_reads + api.max_concurrent_exports, opener,
                api.read_nice))
            reader = WarehouseReader(self.read_pool)
            cursors = load_cursor_secret(api.cursor_secret.get_secret_value(), settings.data_dir)
            if live_reads:
                self.live = LiveHub(reader, api.stream_queue_messages, cursors)
                self.live.start()
            markets = [(name, symbol) for name, venue in settings.venues.enabled().items() for symbol in venue.symbols]
            # Ranges older than warm retention are read from the cold tier; until something was
            # offloaded to a cold table, the warm tier serves everything (api/tiers.py).
            cold = ColdReader.from_settings(settings.lake, settings.data_dir)
            app = create_app(reader, settings, health=self._health_sources(memory_bus), configured_markets=markets,
                             # Candles are kept while true only where this process is the one writer.
                             cold=cold, changes=None if self.kafka else self.changes, live=self.live,
                             cursors=cursors, keys=self.api_keys)
            config = uvicorn.Config(app, host=settings.api.host, port=settings.api.port, log_level="warning",
                                    lifespan="off", http=BoundedH11Protocol)
            self.api_server = uvicorn.Server(config)
            self._tasks.append(asyncio.create_task(self.api_server.serve(), name="api"))
            log.info("API on http://%s:%d (docs at /docs; %s)", settings.api.host, settings.api.port,
                     f"API keys from {self.api_keys.path}" if self.api_keys else "no API key needed")
        elif self.kafka or "ingest" not in roles:
            # A role without the API still shows its metrics.
            self._metrics_server, _thread = prometheus_client.start_http_server(
                settings.metrics.port, settings.metrics.host, registry=metrics.REGISTRY)
            self.metrics_port = self._metrics_server.server_port
            log.info("metrics on http://%s:%d/metrics", settings.metrics.host, self.metrics_port)
        log.info("roles: %s (bus: %s)", ", ".join(r for r in ROLES if r in roles), settings.bus.kind)
        if self.client is not None and is_embedded(settings.resolved_warehouse_url) \
                and settings.warehouse_release_code_pages:
            self._tasks.append(asyncio.create_task(self._release_code_pages(), name="code-pages"))

    async def _release_code_pages(self) -> None:
        """The embedded engine's code that ran once leaves this process's RSS (ops/code_pages.py): what
        opening and migrating ran, after 15 s; what the first completeness check and merges ran, at
        2.5 min; then every 10 minutes, what ran since (~100 MB of RssFile in all; what the steady work
        runs comes back on minor faults within a second)."""
        for delay in itertools.chain((15.0, 135.0), itertools.repeat(600.0)):
            await asyncio.sleep(delay)
            released = await asyncio.to_thread(release_code_pages)  # reads smaps: not on the event loop
            log.debug("released %d MB of the engine's mapped code", released >> 20)

    def _start_completeness(self, memory_bus: MemoryBus | None) -> None:
        """The check of the stored trade ids for holes (warehouse/completeness.py). Its backfilled trades
        take the usual way in: the embedded bus, or (Kafka) a producer of this process's own."""
        assert self.client is not None
        sink: MessageSink
        if memory_bus is not None:
            sink = memory_bus
        else:
            from ticklake.bus.kafka import KafkaProducerBus

            sink = self.check_producer = KafkaProducerBus(self.settings.bus.kafka)
        source = self.source
        self.completeness = CompletenessCheck(
            self.client, self.settings, sink, self._executor, rest=self.feeds.rest if self.feeds else None,
            owned=(lambda: set(source.assigned)) if source is not None else None, changes=self.changes)
        self._tasks.append(asyncio.create_task(self.completeness.run_forever(), name="completeness"))
        check = self.settings.completeness
        log.info("completeness: stored trade ids checked for holes every %.0f s over the last %.0f s",
                 check.interval_s, check.window_s)

    async def _watch_producer(self) -> None:
        """Keep the feed role publishing through broker trouble, in this process.

        A broker that went away may have lost messages it had acknowledged (an unclean restart, a
        lost disk), and it may have forgotten the producer's sequence numbers, which fails the
        producer for good. So once the broker answers again after a lost connection: a producer that
        failed is replaced by a fresh one, and what the broker holds of each market is compared with
        what the feeds handed on; the holes are backfilled from the venues (``check_broker``). Only a
        producer that keeps failing even when renewed stops the process (exit status 1), for its
        supervisor to restart."""
        loop = asyncio.get_running_loop()
        producer = self.producer
        assert producer is not None
        renewals = 0  # in a row, each renewed producer failing within _RENEWAL_WINDOW_S
        renewed_at = -_RENEWAL_WINDOW_S
        while True:
            await asyncio.sleep(1.0)
            if producer.fatal:
                # Renewed at once (a failed producer cannot even ask for metadata); the fresh one waits
                # for the broker like any producer, and the check below runs once it answers.
                now = time.monotonic()
                renewals = renewals + 1 if now - renewed_at < _RENEWAL_WINDOW_S else 1
                if renewals > _MAX_RENEWALS:
                    log.critical("stopping: the Kafka producer failed for good %d times in a row, each time within "
                                 "%.0f s of being renewed (last: %s); this cannot be recovered in-process, so the "
                                 "process exits for its supervisor to start it again", renewals, _RENEWAL_WINDOW_S,
                                 producer.fatal)
                    break
                renewed_at = now
                reason = producer.fatal
                held = await producer.renew()
                log.warning("the Kafka producer failed for good (%s): replaced by a fresh one; what the broker holds "
                            "is checked once it answers (%d messages the old one held were not delivered)", reason,
                            held)
                producer.broker_lost = True
                continue
            if not producer.broker_lost or not await loop.run_in_executor(None, producer.broker_reachable):
                continue  # frames wait in the feeds (back-pressure) until the broker answers
            log.warning("the broker answers again after a lost connection: checking what it holds (an unclean "
                        "broker restart can lose messages it had acknowledged)")
            producer.broker_lost = False
            try:
                await self.check_broker()
            except Exception as exc:  # the broker went away again, say: the next round checks again
                log.warning("checking what the broker holds failed (%s); trying again", exc)
                producer.broker_lost = True
        self.exit_code = 1
        self.stopped.set()

    async def check_broker(self) -> int:
        """Compare what the broker holds of each market with what the feeds handed on up to now, and
        backfill the holes from the venues. Returns how many trades were found missing."""
        producer, feeds = self.producer, self.feeds
        if producer is None or feeds is None:
            return 0
        handed_on = feeds.newest()
        undelivered = await producer.flush(_BROKER_CHECK_FLUSH_S)  # everything handed on is on the broker
        if producer.fatal:
            raise RuntimeError("the producer failed for good meanwhile")
        if undelivered:
            raise RuntimeError(f"{undelivered} messages still undelivered after {_BROKER_CHECK_FLUSH_S:g} s")
        loop = asyncio.get_running_loop()
        held = await loop.run_in_executor(None, held_trades, self._broker_tail(), set(handed_on))
        missing = 0
        for (exchange, native), newest in handed_on.items():
            for gap in holes(held.get((exchange, native), {}), newest):
                missing += feeds.refill(exchange, gap._replace(native_symbol=native), "what the broker holds")
        log.info("checked what the broker holds: %d trades missing%s", missing,
                 ", backfilling them from the venues" if missing else "")
        return missing

    async def _resume_points(self, writer: WarehouseWriter | None) -> dict[tuple[str, str], Resume]:
        """Where each market's feed resumes: from what reached the broker (Kafka bus: the feed's own
        record of what it published, further along than the warehouse), or what was stored."""
        loop = asyncio.get_running_loop()
        venues = self.settings.venues.enabled()
        if self.kafka:
            markets = {(name, to_native(name, symbol)) for name, venue in venues.items() for symbol in venue.symbols}
            return await loop.run_in_executor(None, broker_resume_points, self._broker_tail(), markets)
        if writer is None:
            return {}
        return await loop.run_in_executor(self._executor, WarehouseReader(writer.client).resume_points)

    def _broker_tail(self) -> TailReader:
        """The enabled venues' trades topics, read back from their ends (exchanges/resume.py)."""
        from ticklake.bus.kafka import read_tail

        topics = [trades_topic(venue) for venue in self.settings.venues.enabled()]
        return partial(read_tail, self.settings.bus.kafka, topics)

    def _arrived(self, messages: Sequence[Message]) -> None:
        if self.live is not None:
            self.live.arrived(m.value for m in messages if isinstance(m.value, Trade))

    def _committed(self, plan: Plan) -> None:
        """After each batch the warehouse holds: the caller's hook, and the live stream's."""
        if self.on_batch is not None:
            self.on_batch(plan)
        if self.live is not None:
            self.live.committed(plan.silver, plan.committed_us)

    def _health_sources(self, memory_bus: MemoryBus | None) -> dict[str, Any]:
        def feeds() -> dict[str, object]:
            statuses = self.feeds.statuses() if self.feeds else {}
            venues = {name: _status_dict(status) for name, status in statuses.items()}
            connected = [name for name, status in statuses.items() if str(status.state) == "connected"]
            state = "ok" if len(connected) == len(statuses) else ("degraded" if connected else "down")
            return {"status": state if statuses else "degraded", "venues": venues}

        def ingest() -> dict[str, object]:
            if self.ingester is None:
                return {"status": "down"}
            health = self.ingester.status.health()
            if self.source is not None:
                health["partitions"] = len(self.source.assigned)
                health["consumer_error"] = self.source.last_error
                if self.source.last_error and not self.source.assigned and health["status"] == "ok":
                    health["status"] = "degraded"  # cannot join the group: nothing is being ingested
            return health

        def bus_health() -> dict[str, object]:
            if memory_bus is not None:
                depth = memory_bus.depth()
                metrics.BUS_DEPTH.set(depth)
                full = depth >= self.settings.ingest.bus_queue_size
                return {"status": "degraded" if full else "ok", "kind": "embedded", "depth": depth}
            health: dict[str, object] = {"status": "ok", "kind": "kafka"}
            if self.producer is not None:
                queued = self.producer.depth()
                health["producer_queue"] = queued
                health["delivery_failures"] = self.producer.delivery_failures
                if queued >= self.settings.bus.kafka.max_buffered_messages:
                    health["status"] = "degraded"
            if self.source is not None:
                health["consumer_lag"] = self.source.depth()
            return health

        sources: dict[str, Any] = {"bus": bus_health}
        if "feed" in self.roles:
            sources["feeds"] = feeds
        if "ingest" in self.roles:
            sources["ingest"] = ingest
        if self.offloader is not None:
            sources["lake"] = self.offloader.health
        if self.completeness is not None:
            sources["completeness"] = self.completeness.health
        return sources

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.stopped.set)
        await self.start()
        await self.stopped.wait()
        await self.stop()

    async def stop(self) -> None:
        """Stop taking frames, deliver and write what is on its way, then close everything."""
        if self.feeds is not None:
            await self.feeds.stop()
        if self.completeness is not None:
            await self.completeness.close()
        for producer in (self.producer, self.check_producer):
            if producer is not None:
                await producer.close()
        if self.ingester is not None:
            await self.ingester.drain()
        if self.live is not None:
            await self.live.stop()  # ends every stream: the server then stops without waiting on them
        if self.api_server is not None:
            self.api_server.should_exit = True
        for task in self._tasks:
            if task.get_name() != "api":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.source is not None:
            await self.source.close()  # leaves the group: the partitions move at once
        if self.offloader is not None:
            self.offloader.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._executor.shutdown(wait=True)  # an insert in flight finishes before the engine closes
        if self.read_pool is not None:
            self.read_pool.close()
        if self.client is not None:
            self.client.close()
        log.info("stopped")


def _status_dict(status: Any) -> dict[str, object]:
    result: dict[str, object] = msgspec.to_builtins(status)
    return result


class _Tapped:
    """A sink that shows each batch of messages to ``tap`` before handing it on."""

    def __init__(self, sink: MessageSink, tap: Callable[[Sequence[Message]], None]) -> None:
        self.sink = sink
        self.tap = tap

    async def publish(self, messages: Sequence[Message]) -> None:
        self.tap(messages)
        await self.sink.publish(messages)
