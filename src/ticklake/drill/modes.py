"""The failure modes and how each one is measured.

A mode injects one fault into the running deployment and ends it (a killed role is started again at
once, as its supervisor would; an outage lasts its set time). While it runs, four things are watched,
each by polling what a user or an operator can see, every ``POLL_S``:

* **detected**: ticklake itself shows the fault (a /health component not ok, or the metric an alert
  of deploy/prometheus/alerts.yml uses), named per mode in ``Mode.signal``;
* **trades flowing** (MTTR): every market has a trade stored in the warehouse (read through the API)
  with an exchange time at or after the reference moment: the kill, or the outage's end;
* **backfilled**: every trade the venues' tapes hold from the mode's start up to the fault's end
  is stored (the role back up, the outage over);
* **cold tier resumed** (modes on the cold tier): the offloader's last successful offload of silver
  trades (``ticklake_lake_last_offload_timestamp_seconds``) is after the reference moment.

Trades lost and duplicated and candles differing from recomputation are counted at the end of the
run over each mode's window (accounting.py), when everything has been written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ticklake.drill.deployment import Deployment

log = logging.getLogger(__name__)

POLL_S = 0.25
WATCH_TIMEOUT_S = 300.0  # a recovery slower than this is reported as not seen (and fails)
TARGET_MTTR_S = 30.0


@dataclass
class Outcome:
    """One mode's measurements (seconds; None: not seen within ``WATCH_TIMEOUT_S``)."""

    mode: str
    signal: str
    fault_at: float = 0.0  # when the fault began (epoch seconds)
    killed: bool = False  # a kill or restart (MTTR counted from it), not an outage
    cold: bool = False  # a mode on the cold tier: the offload must resume
    outage_s: float | None = None  # how long the fault lasted (the role's restart, the outage)
    detected_s: float | None = None  # from the fault's start
    detected_by: str = ""
    mttr_s: float | None = None  # from the reference moment (the kill, or the outage's end)
    backfilled_s: float | None = None  # from the same moment
    cold_resumed_s: float | None = None  # cold-tier modes
    first_write_s: float | None = None  # from the reference moment to the ingester's first write after it
    stored_s: float | None = None  # from the same moment until every market had a newer trade committed
    reference_at: float = 0.0  # the moment MTTR counts from (epoch seconds)
    window: tuple[int, int] = (0, 0)  # exchange-time µs [start, end) the accounting counts over
    lost: int | None = None
    duplicated: int | None = None
    candle_diffs: int | None = None
    cold_duplicates: int | None = None
    notes: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """The targets missed (empty: the mode passed)."""
        missed = []
        if self.mttr_s is None or self.mttr_s >= TARGET_MTTR_S:
            missed.append("MTTR")
        if self.backfilled_s is None:
            missed.append("never backfilled")
        if self.lost is None or self.lost:
            missed.append("lost")
        if self.duplicated is None or self.duplicated:
            missed.append("duplicated")
        if self.candle_diffs is None or self.candle_diffs:
            missed.append("candles")
        if self.cold_duplicates:
            missed.append("cold duplicates")
        if self.cold and self.cold_resumed_s is None:
            missed.append("cold tier never resumed")
        return missed


@dataclass
class Mode:
    """One failure mode: ``inject`` starts the fault and returns once it is over (the drill restarts
    what it killed); ``reference`` is "kill" or "end" (what MTTR counts from)."""

    name: str
    what: str
    signal: str  # how ticklake shows it (the table's "detected by")
    reference: str  # "kill": MTTR from the fault's start; "end": from its end
    inject: Callable[[Deployment, Callable[[], None]], Awaitable[None]]
    probe: Callable[[Deployment, dict[str, Any]], Awaitable[str | None]]
    cold: bool = False


# --- probes: ticklake showing the fault --------------------------------------------------------------
def _sum(samples: dict[str, float], name: str, **labels: str) -> float:
    total = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{label}="{wanted}"' in rest for label, wanted in labels.items()):
            total += value
    return total


async def _scrape_fails(deployment: Deployment, role_name: str) -> str | None:
    role = deployment.feed if role_name == "feed" else deployment.node
    if await deployment.metrics(role) is None:
        return f"{role_name} /metrics unanswered (up == 0: TicklakeTargetDown)"
    return None


async def _broker_trouble(deployment: Deployment, baseline: dict[str, Any]) -> str | None:
    feed = await deployment.metrics(deployment.feed)
    if feed is not None:
        queued = _sum(feed, "ticklake_bus_producer_queue")
        if queued > max(2 * baseline["producer_queue_max"], baseline["producer_queue_max"] + 25):
            return f"feed ticklake_bus_producer_queue {queued:.0f} (TicklakeBusProducerBacklog's metric)"
    health = await deployment.health()
    if health is not None:
        ingest = health.get("components", {}).get("ingest", {})
        if ingest.get("consumer_error"):
            return f"/health ingest.consumer_error: {str(ingest['consumer_error'])[:60]}"
        if ingest.get("status") not in (None, "ok"):
            return f"/health ingest {ingest.get('status')}"
    return None


async def _venue_disconnected(deployment: Deployment, exchange: str) -> str | None:
    feed = await deployment.metrics(deployment.feed)
    if feed is not None and _sum(feed, "ticklake_feed_connected", exchange=exchange) == 0:
        return f"feed ticklake_feed_connected{{exchange={exchange}}} == 0 (TicklakeFeedDisconnected)"
    return None


async def _lake_failing(deployment: Deployment, baseline: dict[str, Any]) -> str | None:
    health = await deployment.health()
    if health is not None:
        lake = health.get("components", {}).get("lake", {})
        if lake.get("status") not in (None, "ok"):
            return f"/health lake {lake.get('status')} ({', '.join(lake.get('failing', []))[:40]})"
    node = await deployment.metrics(deployment.node)
    if node is not None and _sum(node, "ticklake_lake_offload_failures_total") > baseline.get("lake_failures", 0.0):
        return "ticklake_lake_offload_failures_total up (TicklakeLakeOffloadFailing's metric)"
    return None


# --- the modes --------------------------------------------------------------------------------------
async def _restart(deployment: Deployment, role_name: str) -> None:
    role = deployment.feed if role_name == "feed" else deployment.node
    deployment.start_role(role)
    await deployment.until_answering(role, 180)


def _kill_role(role_name: str, when: str) -> Callable[[Deployment, Callable[[], None]], Awaitable[None]]:
    async def inject(deployment: Deployment, started: Callable[[], None]) -> None:
        role = deployment.feed if role_name == "feed" else deployment.node
        if when == "mid-read":
            # Readers in flight when the API dies: a few candle and trade pages.
            market = next(iter(deployment.markets.items()))
            params: dict[str, str | int] = {"exchange": market[0], "symbol": market[1][0], "limit": 5000}
            reads = [asyncio.create_task(deployment.http.get(f"{role.base_url}{path}", params=params))
                     for path in ("/v1/ohlcv", "/v1/trades", "/v1/ohlcv", "/v1/trades")]
            await asyncio.sleep(0.01)
            started()
            deployment.kill_role(role)
            await asyncio.gather(*reads, return_exceptions=True)
        else:
            # At a random point of its work (mid-batch, mid-publish, most likely), not at a quiet one.
            await asyncio.sleep(random.uniform(0.0, 1.0))
            started()
            deployment.kill_role(role)
        await _restart(deployment, role_name)

    return inject


def _broker(sig: int) -> Callable[[Deployment, Callable[[], None]], Awaitable[None]]:
    async def inject(deployment: Deployment, started: Callable[[], None]) -> None:
        started()
        await asyncio.to_thread(deployment.broker.stop, sig)
        await asyncio.to_thread(deployment.broker.start)

    return inject


def _offloader_mid_commit(deployment: Deployment, started: Callable[[], None]) -> Awaitable[None]:
    async def inject() -> None:
        proxy = deployment.catalog_proxy
        assert proxy is not None
        killed = asyncio.Event()

        def kill() -> None:
            started()
            deployment.kill_role(deployment.node)
            killed.set()

        # The catalog receives the commit of silver trades and commits it; the offloader is killed
        # before it hears so (it has written the data files and asked: the most delicate moment).
        proxy.on_request(rb"POST /v1/\S*/tables/silver_trades HTTP", kill)
        await asyncio.wait_for(killed.wait(), WATCH_TIMEOUT_S)
        await _restart(deployment, "node")

    return inject()


def _object_store_down(seconds: float) -> Callable[[Deployment, Callable[[], None]], Awaitable[None]]:
    async def inject(deployment: Deployment, started: Callable[[], None]) -> None:
        started()
        await asyncio.to_thread(deployment.seaweed.stop, signal.SIGKILL)
        await asyncio.sleep(seconds)
        deployment.seaweed.spawn()  # from the event loop's thread: the server lives as long as the drill
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(deployment.seaweed.ready):
            if time.monotonic() > deadline:
                raise RuntimeError("SeaweedFS did not come back within 60 s")
            await asyncio.sleep(0.05)

    return inject


def _partition(exchange: str, seconds: float) -> Callable[[Deployment, Callable[[], None]], Awaitable[None]]:
    async def inject(deployment: Deployment, started: Callable[[], None]) -> None:
        started()
        for proxy in deployment.venue_proxies[exchange]:
            proxy.partition()
        try:
            await asyncio.sleep(seconds)
        finally:
            for proxy in deployment.venue_proxies[exchange]:
                proxy.heal()

    return inject


PARTITIONED_VENUE = "kraken"  # its watchdog allows 10 s of silence: a 30 s partition must be noticed


def modes(store_down_s: float, partition_s: float) -> dict[str, Mode]:
    """Every mode, in the order a full drill runs them."""
    feed_scrape: Callable[[Deployment, dict[str, Any]], Awaitable[str | None]] = \
        lambda d, _b: _scrape_fails(d, "feed")  # noqa: E731
    node_scrape: Callable[[Deployment, dict[str, Any]], Awaitable[str | None]] = \
        lambda d, _b: _scrape_fails(d, "node")  # noqa: E731
    return {m.name: m for m in (
        Mode("broker-restart", "the broker stopped (SIGTERM) and started again, same data",
             "feed producer queue / ingest consumer error", "kill", _broker(signal.SIGTERM), _broker_trouble),
        Mode("broker-killed", "the broker killed (SIGKILL) and started again, same data",
             "feed producer queue / ingest consumer error", "kill", _broker(signal.SIGKILL), _broker_trouble),
        Mode("ingester-killed", "the ingest process (ingest, API, offloader: one chdb owner) SIGKILLed, restarted",
             "scrape of the ingest process fails", "kill", _kill_role("node", "random"), node_scrape),
        Mode("feed-killed", "the feed process SIGKILLed, restarted", "scrape of the feed fails", "kill",
             _kill_role("feed", "random"), feed_scrape),
        Mode("api-killed", "the API's process SIGKILLed with reads in flight, restarted",
             "scrape of the API process fails", "kill", _kill_role("node", "mid-read"), node_scrape),
        Mode("offloader-killed", "the offloader's process SIGKILLed after the catalog received its commit of "
             "silver trades, before the answer came back; restarted", "scrape of the offloader's process fails",
             "kill", _offloader_mid_commit, node_scrape, cold=True),
        Mode("object-store-down", f"SeaweedFS (S3 and the Iceberg catalog) killed, back after {store_down_s:g} s",
             "/health lake / offload failures", "end", _object_store_down(store_down_s), _lake_failing, cold=True),
        Mode("venue-partitioned", f"{PARTITIONED_VENUE}'s WebSocket and REST black-holed for {partition_s:g} s "
             "(nothing forwarded, nothing closed)", f"feed_connected{{{PARTITIONED_VENUE}}} == 0", "end",
             _partition(PARTITIONED_VENUE, partition_s),
             lambda d, _b: _venue_disconnected(d, PARTITIONED_VENUE)),
    )}


# --- running one mode --------------------------------------------------------------------------------
class Watcher:
    """Measures one mode on a running deployment."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        # Each market's first stored trade: what the venue traded before the feed first subscribed
        # was never asked for, and is not counted.
        self.first_ids: dict[tuple[str, str], int] = {}
        # One API read at a time: the API admits api.max_concurrent_reads (1 on 2 cores) and refuses the
        # rest with a 503, so the drill's watches reading at once would be refused because of each
        # other. (Seen: under a load average of 30, watches reading at once saw trades 14-18 s after
        # the warehouse had stored them.)
        self._reads = asyncio.Lock()

    async def steady(self, timeout_s: float = WATCH_TIMEOUT_S) -> None:
        """Wait until every market has a trade stored in the last few seconds and the roles answer."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            recent = int((time.time() - 3) * 1000)
            if await self.deployment.metrics(self.deployment.feed) is not None and \
                    await self.flowing_since(recent):
                await self._first_ids()
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the deployment did not reach a steady flow of trades in {timeout_s:.0f} s")

    async def flowing_since(self, since_ms: int) -> bool:
        """Every market has a stored trade with exchange time at or after ``since_ms``."""
        for exchange, symbols in self.deployment.markets.items():
            for symbol in symbols:
                try:
                    response = await self.read("/v1/trades", {"exchange": exchange, "symbol": symbol,
                                                              "start": since_ms, "limit": 1})
                    if response.status_code != 200 or not response.json()["trades"]:
                        return False
                except Exception:  # the API down, or answering garbage while it starts
                    return False
        return True

    async def read(self, path: str, params: dict[str, Any]) -> httpx.Response:
        """One API request, after the drill's previous one has been answered."""
        async with self._reads:
            return await self.deployment.http.get(f"{self.deployment.node.base_url}{path}", params=params, timeout=30)

    async def _first_ids(self) -> None:
        for exchange, symbols in self.deployment.markets.items():
            for symbol in symbols:
                if (exchange, symbol) not in self.first_ids:
                    response = await self.read("/v1/trades", {"exchange": exchange, "symbol": symbol, "limit": 1})
                    response.raise_for_status()
                    self.first_ids[(exchange, symbol)] = int(response.json()["trades"][0]["trade_id"])

    async def stored_ids(self, exchange: str, symbol: str, start_ms: int, end_ms: int) -> list[int]:
        """Every stored trade id of the market with exchange time in [start_ms, end_ms), page by page."""
        ids: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"exchange": exchange, "symbol": symbol, "start": start_ms, "end": end_ms,
                                      "limit": 5000}
            if cursor:
                params["cursor"] = cursor
            response = await self.read("/v1/trades", params)
            response.raise_for_status()
            page = response.json()
            ids += [int(t["trade_id"]) for t in page["trades"]]
            cursor = page["next_cursor"]
            if not cursor:
                return ids

    async def backfilled(self, start_ms: int, end_ms: int) -> bool:
        """Every trade of the tapes with exchange time in [start_ms, end_ms) is stored."""
        for exchange, symbols in self.deployment.markets.items():
            for symbol in symbols:
                tape = await self.deployment.tape(exchange, symbol, start_ms * 1000, end_ms * 1000)
                try:
                    stored = set(await self.stored_ids(exchange, symbol, start_ms, end_ms))
                except Exception:
                    return False
                first = self.first_ids.get((exchange, symbol), 0)
                if any(row[0] not in stored for row in tape if row[0] >= first):
                    return False
        return True

    async def written_after(self, moment: float) -> bool:
        """The ingester wrote a batch after ``moment`` (where MTTR's time goes: the role's start, or the
        way from the venues to the ingester)."""
        samples = await self.deployment.metrics(self.deployment.node)
        return samples is not None and _sum(samples, "ticklake_ingest_last_flush_timestamp_seconds") > moment

    async def cold_resumed_after(self, moment: float) -> bool:
        samples = await self.deployment.metrics(self.deployment.node)
        if samples is None:
            return False
        last = _sum(samples, "ticklake_lake_last_offload_timestamp_seconds", table="silver_trades")
        return last > moment

    async def run(self, mode: Mode) -> Outcome:
        deployment = self.deployment
        outcome = Outcome(mode.name, mode.signal, cold=mode.cold)
        await self.steady()
        baseline: dict[str, Any] = {"producer_queue_max": 0.0}
        for _ in range(8):  # the producer's queue over 2 s of normal work: what is not a backlog
            feed = await deployment.metrics(deployment.feed)
            if feed is not None:
                baseline["producer_queue_max"] = max(baseline["producer_queue_max"],
                                                     _sum(feed, "ticklake_bus_producer_queue"))
            await asyncio.sleep(POLL_S)
        node = await deployment.metrics(deployment.node)
        if node is not None:
            baseline["lake_failures"] = _sum(node, "ticklake_lake_offload_failures_total")
        window_start_ms = int(time.time() * 1000) - 2000
        fault: dict[str, float] = {}

        def started() -> None:
            fault.setdefault("start", time.time())

        detector = asyncio.create_task(self._detect(mode, baseline, fault))
        log.info("drill: %s: %s", mode.name, mode.what)
        try:
            await mode.inject(deployment, started)
        except BaseException:
            detector.cancel()
            raise
        fault["end"] = time.time()
        outcome.outage_s = fault["end"] - fault["start"]
        outcome.fault_at, outcome.killed = fault["start"], mode.reference == "kill"
        reference = fault["start"] if mode.reference == "kill" else fault["end"]
        reference_ms = int(reference * 1000)
        outcome.reference_at = reference
        end_ms = int(fault["end"] * 1000)

        async def until(check: Callable[[], Awaitable[bool]], every_s: float) -> float | None:
            deadline = time.monotonic() + WATCH_TIMEOUT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if await check():
                        return time.time() - reference
                await asyncio.sleep(every_s)
            return None

        watches = [until(lambda: self.flowing_since(reference_ms), POLL_S),
                   until(lambda: self.backfilled(window_start_ms, end_ms), 1.0),
                   until(lambda: self.written_after(reference), POLL_S)]
        if mode.cold:
            watches.append(until(lambda: self.cold_resumed_after(reference), 0.5))
        results = await asyncio.gather(*watches)
        outcome.mttr_s, outcome.backfilled_s, outcome.first_write_s = results[0], results[1], results[2]
        if mode.cold:
            outcome.cold_resumed_s = results[3]
        # Detection may come late (or never, when recovery was faster than anything could show).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(detector), 5)
        detector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await detector
        if "detected" in fault:
            outcome.detected_s = fault["detected"] - fault["start"]
            outcome.detected_by = str(baseline.get("detected_by", ""))
        outcome.window = (window_start_ms * 1000, int(time.time() * 1000) * 1000)
        return outcome

    async def _detect(self, mode: Mode, baseline: dict[str, Any], fault: dict[str, float]) -> None:
        while "start" not in fault:
            await asyncio.sleep(0.01)
        while True:
            with contextlib.suppress(Exception):
                shown = await mode.probe(self.deployment, baseline)
                if shown:
                    fault["detected"] = time.time()
                    baseline["detected_by"] = shown
                    return
            await asyncio.sleep(POLL_S)
