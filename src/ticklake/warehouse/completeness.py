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
   (``ticklake_completeness_trades_unrecoverable_total``); it is not asked for again;
4. compare, minute by minute over the same trades, silver's counts with gold's, and recompute from
   silver the candle windows (every timeframe) of a minute that disagrees: a batch cut short inside
   the gold view, whose messages a broker then lost, is replayed by nothing else
   (``gold.recompute``; counted in ``ticklake_repairs_total{layer="gold"}``).

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from clickhouse_connect.driver.client import Client

from ticklake.bus.base import PartitionKey
from ticklake.exchanges.backfill import Backfill, BackfillMetrics
from ticklake.exchanges.feeds import rest_url_for
from ticklake.exchanges.gaps import Gap, GapTracker, minus
from ticklake.exchanges.rest import RestClient, fetcher_for
from ticklake.model import MessageSink
from ticklake.ops import metrics
from ticklake.settings import Settings
from ticklake.venues import to_native
from ticklake.venues import venue as venue_facts
from ticklake.warehouse import gold
from ticklake.warehouse.changes import StoredChanges
from ticklake.warehouse.gold import WindowKey
from ticklake.warehouse.reader import TIMEFRAMES
from ticklake.warehouse.sql import query

log = logging.getLogger(__name__)

_NEWEST = 2**64 - 1  # a trade id above every other: the market's newest trade

# exchange, native symbol, first and last missing id, exchange times around the hole
StoredGapRow = tuple[str, str, int, int, int, int]

COUNTERS = BackfillMetrics(metrics.COMPLETENESS_GAPS, metrics.COMPLETENESS_FILLED,
                           metrics.COMPLETENESS_UNRECOVERABLE, None)


@dataclass
class _Refill:
    """Ids ``first .. last`` of a market handed to a refill; ``done_at``: when a check saw it done."""

    first: int
    last: int
    done_at: float | None = None


class CompletenessCheck:
    """The ingest role's check of the stored trade ids (see the module docstring).

    ``executor`` is where the warehouse is used (the platform's one warehouse thread, so the check's
    queries and recomputations never run between a batch's inserts). ``owned`` gives the bus partitions
    this ingester holds (Kafka bus), None for all. ``rest``: the feeds' client in the same process.
    """

    def __init__(self, client: Client, settings: Settings, sink: MessageSink, executor: Executor, *,
                 rest: RestClient | None = None, owned: Callable[[], set[PartitionKey]] | None = None,
                 clock: Callable[[], float] = time.time, changes: StoredChanges | None = None) -> None:
        self.client = client
        self.changes = changes  # told when candles were recomputed (warehouse/changes.py)
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
        self._labels: dict[tuple[str, str], str] = {}  # (exchange, native) -> canonical symbol
        for name, venue in venues.items():
            canonical = {to_native(name, symbol): symbol for symbol in venue.symbols}
            self._labels.update({(name, native): symbol for native, symbol in canonical.items()})
            self.backfills[name] = Backfill(
                name, GapTracker(), sink.publish, fetcher=fetcher_for(name) if name in urls else None,
                client=rest if name in urls else None, lookback_s=settings.feed.backfill_lookback_s,
                symbols=canonical, counters=COUNTERS)
        self._natives = {(exchange, symbol): native for (exchange, native), symbol in self._labels.items()}
        # Every series at zero from the start (the backfills' counters too): a dashboard line, not "no data".
        for result in ("ok", "failed"):
            metrics.COMPLETENESS_CHECKS.labels(result)
        for exchange, symbol in self._natives:
            metrics.COMPLETENESS_MISSING.labels(exchange, symbol)
        self.gold_windows_mended = 0
        self.last_check_at: float | None = None
        self.last_error = ""
        self.missing = 0  # ids missing within the window at the last check
        self._missing_labels: set[tuple[str, str]] = set()
        # Ids handed to a refill, per market: [first, last, done_at]. A filled hole stays a hole in
        # the warehouse until its trades have crossed the bus and the writer, so the same ids are not
        # asked for again until settle_s after a check saw the fill done (done_at; None while it runs):
        # the time the check leaves the feeds' own backfill. Else a slow writer makes every check
        # fetch and count them again.
        self._refilled: dict[tuple[str, str], list[_Refill]] = {}

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
        rows, mended = await asyncio.get_running_loop().run_in_executor(self.executor, self._look, since, until,
                                                                        owned)
        self.gold_windows_mended += mended
        if mended and self.changes is not None:
            self.changes.touch_everything()
        budget = self.settings.max_missing_per_check
        asked = 0
        missing: dict[tuple[str, str], int] = {}
        self._settle_refills(now)
        for exchange, native, first, last, before_ts_us, after_ts_us in rows:
            if not venue_facts(exchange).ids_count_trades:
                continue  # ids shared by a venue's markets (Bybit spot): a hole in them is no missing trade
            missing[(exchange, native)] = missing.get((exchange, native), 0) + last - first + 1
            backfill = self.backfills.get(exchange)
            for piece_first, piece_last in self._not_refilled((exchange, native), first, last):
                if backfill is None or budget <= 0:
                    break
                piece_last = min(piece_last, piece_first + budget - 1)  # the rest waits for the next check
                taken = backfill.refill(Gap(native, piece_first, piece_last, before_ts_us, after_ts_us),
                                        "the warehouse")
                if taken:
                    self._refilled.setdefault((exchange, native), []).append(_Refill(piece_first, piece_last))
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

    def _settle_refills(self, now: float) -> None:
        """Stamp the refills found done, and forget those done at least settle_s ago."""
        for (exchange, native), ranges in list(self._refilled.items()):
            running = self.backfills[exchange].busy()
            for refill in ranges:
                if refill.done_at is None and not running:
                    refill.done_at = now
            kept = [refill for refill in ranges
                    if refill.done_at is None or now - refill.done_at < self.settings.settle_s]
            if kept:
                self._refilled[(exchange, native)] = kept
            else:
                del self._refilled[(exchange, native)]

    def _not_refilled(self, market: tuple[str, str], first: int, last: int) -> list[tuple[int, int]]:
        """The ids of ``first .. last`` not handed to a refill recently (see ``_refilled``)."""
        pieces = [(first, last)]
        for refill in self._refilled.get(market, ()):
            pieces = [piece for a, b in pieces for piece in minus(a, b, refill.first, refill.last)]
        return pieces

    def _look(self, since: datetime, until: datetime, owned: set[PartitionKey] | None
              ) -> tuple[list[StoredGapRow], int]:
        """On the warehouse thread: the holes of this ingester's markets, and how many gold windows it
        recomputed. Markets no longer configured are left alone."""
        rows = cast(list[StoredGapRow], self.client.query(query("stored_gaps"), parameters={
            "exchanges": self.exchanges, "since": since, "until": until}).result_rows)
        holes = [row for row in rows if (row[0], row[1]) in self._labels
                 and self._mine(row[0], row[1], row[3] + 1, owned)]
        # Whole minutes only, so that a minute's silver and gold counts cover the same trades.
        first, end = _minute(since, up=True), _minute(until)
        minutes = {"exchanges": self.exchanges, "since": first, "until": end, "since_bucket": first,
                   "until_bucket": end}
        short: list[WindowKey] = []
        for exchange, symbol, minute, silver, gold_count in self.client.query(
                query("minute_window_counts"), parameters=minutes).result_rows:
            native = self._natives.get((exchange, symbol))
            if native is None or not self._mine(exchange, native, _NEWEST, owned):
                continue
            log.warning("%s %s: the candles of %s count %d trades where silver holds %d: recomputing them",
                        exchange, symbol, gold.as_utc(minute).isoformat(), gold_count, silver)
            start = int(gold.as_utc(minute).timestamp())
            short += [(exchange, symbol, tf, datetime.fromtimestamp(start // tf * tf, UTC))
                      for tf in TIMEFRAMES.values()]
        return holes, gold.recompute(self.client, set(short)) if short else 0

    def _mine(self, exchange: str, native: str, trade_id: int, owned: set[PartitionKey] | None) -> bool:
        """Whether this ingester checks the market: it holds the bus partition of the market's newest
        stored trade at or below ``trade_id`` (every ingester, without a Kafka bus)."""
        if owned is None:
            return True
        found = self.client.query(query("stored_trade_partition"), parameters={
            "exchange": exchange, "native_symbol": native, "trade_id": trade_id}).result_rows
        return not found or found[0][1] < 0 or (found[0][0], found[0][1]) in owned

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
                "filling": self.busy(), "gold_windows_recomputed": self.gold_windows_mended,
                "last_error": self.last_error}

    async def close(self) -> None:
        await asyncio.gather(*(backfill.close() for backfill in self.backfills.values()))
        if self._own_rest is not None:
            await self._own_rest.aclose()


def _minute(moment: datetime, up: bool = False) -> datetime:
    """``moment`` rounded down (or up) to a whole minute."""
    floor = moment.replace(second=0, microsecond=0)
    return floor + timedelta(minutes=1) if up and floor != moment else floor
