"""Completeness: holes in the stored trade ids, found in the warehouse and filled from the venues.

The feeds find the gaps in what they *receive* and backfill them. A trade can still go missing after
a feed handed it on: a broker that lost messages it had acknowledged (an unclean leader election, a
lost disk, a topic recreated by hand), a crash between layers, a bug. Only what is *stored* tells.
So the process that writes the warehouse (the ingest role) checks it, every
``completeness.interval_s``:

1. find the holes among each market's trade ids in silver and dead letters, what users see
   (``queries/stored_gaps.sql``; every venue numbers a market's trades without gaps), over the trades
   of the last ``completeness.window_s``, leaving the newest ``completeness.settle_s`` to the feed's
   own backfill;
2. hand each hole to a ``Backfill`` of its own per venue (the feed's machinery: REST pages within
   the venue's rate limits, retries, the look-back), which publishes the pages and their trades to
   the bus like a feed does, so they reach every layer the usual way: the writer drops what arrived
   meanwhile, and completes trades that bronze holds but silver lacks (a batch cut short whose
   messages the broker lost, so that nothing replays it);
3. what a venue cannot serve is given up once, logged, and counted per market
   (``ticklake_completeness_trades_unrecoverable_total``); it is not asked for again.

With a Kafka bus, several ingesters may share the warehouse (a ClickHouse server): each checks the
markets whose trades arrive on the partitions it holds (the bronze row of the trade after a hole says
which). In embedded mode the check shares the feeds'
REST client, and so their rate limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import cast

from clickhouse_connect.driver.client import Client

from ticklake.bus.base import PartitionKey
from ticklake.exchanges.backfill import Backfill, BackfillMetrics
from ticklake.exchanges.feeds import rest_url_for
from ticklake.exchanges.gaps import Gap, GapTracker
from ticklake.exchanges.rest import RestClient, fetcher_for
from ticklake.model import MessageSink
from ticklake.ops import metrics
from ticklake.settings import Settings
from ticklake.symbols import to_native
from ticklake.warehouse.sql import query

log = logging.getLogger(__name__)

# exchange, native symbol, first and last missing id, exchange times around the hole
StoredGapRow = tuple[str, str, int, int, int, int]

COUNTERS = BackfillMetrics(metrics.COMPLETENESS_GAPS, metrics.COMPLETENESS_FILLED,
                           metrics.COMPLETENESS_UNRECOVERABLE, None)


class CompletenessCheck:
    """The ingest role's check of the stored trade ids (see the module docstring).

    ``on_warehouse`` runs a blocking call where the warehouse may be used (the embedded engine's one
    thread). ``owned`` gives the bus partitions this ingester holds (Kafka bus), None for all.
    """

    def __init__(self, client: Client, settings: Settings, sink: MessageSink, executor: Executor, *,
                 rest: RestClient | None = None, owned: Callable[[], set[PartitionKey]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.settings = settings.completeness
        self.executor = executor
        self.owned = owned
        self._clock = clock
        venues = settings.venues.enabled()
        self.exchanges = list(venues)
        urls = {name: rest_url_for(name, venue) for name, venue in venues.items()}
        urls = {name: url for name, url in urls.items() if url}
        self._own_rest: RestClient | None = None
        if rest is None and urls:
            rest = self._own_rest = RestClient(settings.feed, urls=urls)
        self.backfills: dict[str, Backfill] = {}
        self._labels: dict[tuple[str, str], str] = {}
        for name, venue in venues.items():
            canonical = {to_native(name, symbol): symbol for symbol in venue.symbols}
            self._labels.update({(name, native): symbol for native, symbol in canonical.items()})
            self.backfills[name] = Backfill(
                name, GapTracker(), sink.publish, fetcher=fetcher_for(name) if name in urls else None,
                client=rest if name in urls else None, lookback_s=settings.feed.backfill_lookback_s,
                symbols=canonical, counters=COUNTERS)
        self.last_check_at: float | None = None
        self.last_error = ""
        self.missing = 0  # ids missing within the window at the last check
        self._missing_labels: set[tuple[str, str]] = set()

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the warehouse is busy or away: the next round tries again
                self.last_error = f"{type(exc).__name__}: {exc}"
                metrics.COMPLETENESS_CHECKS.labels("failed").inc()
                log.warning("checking the stored trade ids failed: %s", self.last_error)

    async def check(self) -> int:
        """One check; returns how many missing ids it asked the venues for."""
        now = self._clock()
        since = datetime.fromtimestamp(now - self.settings.window_s, UTC)
        until = datetime.fromtimestamp(now - self.settings.settle_s, UTC)
        owned = self.owned() if self.owned is not None else None
        rows = await asyncio.get_running_loop().run_in_executor(self.executor, self._stored_gaps, since, until, owned)
        budget = self.settings.max_missing_per_check
        asked = 0
        missing: dict[tuple[str, str], int] = {}
        for exchange, native, first, last, before_ts_us, after_ts_us in rows:
            missing[(exchange, native)] = missing.get((exchange, native), 0) + last - first + 1
            backfill = self.backfills.get(exchange)
            if backfill is None or budget <= 0:
                continue
            last = min(last, first + budget - 1)  # the rest waits for the next check
            taken = backfill.refill(Gap(native, first, last, before_ts_us, after_ts_us), "the warehouse")
            budget -= taken
            asked += taken
        self._report(missing)
        self.last_check_at = self._clock()
        self.last_error = ""
        metrics.COMPLETENESS_CHECKS.labels("ok").inc()
        metrics.COMPLETENESS_LAST_CHECK.set(self.last_check_at)
        if budget <= 0:
            log.warning("more than %d trade ids are missing from the warehouse: the rest are asked for at the "
                        "next checks (completeness.max_missing_per_check)", self.settings.max_missing_per_check)
        return asked

    def _stored_gaps(self, since: datetime, until: datetime, owned: set[PartitionKey] | None) -> list[StoredGapRow]:
        """The holes of the configured markets; with ``owned``, only of the markets whose trades come
        through those bus partitions (the trade after the hole says which)."""
        rows = cast(list[StoredGapRow], self.client.query(query("stored_gaps"), parameters={
            "exchanges": self.exchanges, "since": since, "until": until}).result_rows)
        rows = [row for row in rows if (row[0], row[1]) in self._labels]  # markets no longer configured: not ours
        if owned is None:
            return rows
        mine = []
        for row in rows:
            found = self.client.query(query("stored_trade_partition"), parameters={
                "exchange": row[0], "native_symbol": row[1], "trade_id": row[3] + 1}).result_rows
            if not found or found[0][1] < 0 or (found[0][0], found[0][1]) in owned:
                mine.append(row)
        return mine

    def _report(self, missing: dict[tuple[str, str], int]) -> None:
        for key in self._missing_labels - missing.keys():
            metrics.COMPLETENESS_MISSING.labels(key[0], self._labels.get(key, key[1])).set(0)
        for key, count in missing.items():
            metrics.COMPLETENESS_MISSING.labels(key[0], self._labels.get(key, key[1])).set(count)
        self._missing_labels |= missing.keys()
        self.missing = sum(missing.values())

    def busy(self) -> bool:
        """Whether some hole is still being filled."""
        return any(backfill.busy() for backfill in self.backfills.values())

    def health(self) -> dict[str, object]:
        stale = self.last_check_at is None or self._clock() - self.last_check_at > 3 * self.settings.interval_s
        status = "degraded" if self.last_error and stale else "ok"
        return {"status": status, "last_check_at": self.last_check_at, "missing_trades": self.missing,
                "filling": self.busy(), "last_error": self.last_error}

    async def close(self) -> None:
        await asyncio.gather(*(backfill.close() for backfill in self.backfills.values()))
        if self._own_rest is not None:
            await self._own_rest.aclose()
