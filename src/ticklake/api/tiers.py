"""Which tier answers a request: ranges older than ClickHouse's retention come from Iceberg.

**The boundary B.** Warm retention counts from when a row was stored (``stored_at`` for trades,
``updated_at`` for candles), and a row is stored after its exchange time (a trade may be ahead by
``validation.max_future_s`` and clock skew). So ClickHouse certainly holds every trade with
``ts >= now - retention.silver_days`` and every candle with ``bucket >= now - retention.gold_days``
(``gold_1d_days`` for 1d). B is that instant minus a margin of one day (clock skew, TTL merges that
run late or early), rounded down to 00:00 UTC, so it moves once a day.

**The split.** [start, B) is read from the cold tier, [B, end) from the warm tier: every row comes
from exactly one tier, so there is nothing to deduplicate, and the pieces join in order. A page is
filled from the older piece first (or from the newer one first for "the newest candles"), and the
other tier is asked only when the first did not fill the page. A trades cursor is a position
(exchange time, trade id): one in the cold piece continues there; one at or after B skips the cold
tier.

**Assumption.** The cold tier holds every row with a time before B. It does once the offloader has
run since the row was stored: offloads run at least every 15 minutes, retention is days. A trade
stored with an old exchange time (a late trade, a backfill or replay of old data) reaches the API's
cold piece at the next offload, not at once; candles before B likewise. A cold table that does not
exist yet (nothing was ever offloaded to it) leaves the whole range to the warm tier, as before the
lake.

``tier`` in a response says which tiers were read: "warm", "cold", or "warm+cold".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ticklake.lake.cold_reader import ColdReader
from ticklake.settings import RetentionSettings
from ticklake.times import us_from_datetime
from ticklake.warehouse.reader import EPOCH, CandleRow, StoredTrade, WarehouseReader

Tier = Literal["warm", "cold", "warm+cold"]
TIERS: tuple[Tier, ...] = ("warm", "cold", "warm+cold")
TIER_HEADER = "X-Ticklake-Tier"
SAFETY_MARGIN = timedelta(days=1)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TierBoundary:
    """Where the warm tier certainly begins, per kind of data (see the module docstring)."""

    silver_days: int
    gold_days: int
    gold_1d_days: int
    margin: timedelta = SAFETY_MARGIN
    clock: Callable[[], datetime] = field(default=_now, compare=False)

    @classmethod
    def from_retention(cls, retention: RetentionSettings) -> TierBoundary:
        return cls(retention.silver_days, retention.gold_days, retention.gold_1d_days)

    def trades(self) -> datetime:
        return self._boundary(self.silver_days)

    def candles(self, timeframe: str) -> datetime:
        return self._boundary(self.gold_1d_days if timeframe == "1d" else self.gold_days)

    def _boundary(self, days: int) -> datetime:
        moment = self.clock() - timedelta(days=days) - self.margin
        return max(EPOCH, moment.replace(hour=0, minute=0, second=0, microsecond=0))


class TieredReader:
    """``WarehouseReader``'s candles and trades, with ranges before B read from ``cold`` (when
    given and when it holds the table; otherwise everything is read warm, as before the lake)."""

    def __init__(self, warm: WarehouseReader, cold: ColdReader | None, boundary: TierBoundary) -> None:
        self.warm = warm
        self.cold = cold
        self.boundary = boundary

    def ohlcv_rows(self, exchange: str, symbol: str, timeframe: str, start: datetime | None,
                   end: datetime | None, limit: int) -> tuple[list[CandleRow], Tier]:
        """As ``WarehouseReader.ohlcv_rows``: the first ``limit`` candles from ``start``, or the newest
        ``limit`` before ``end`` without a start; oldest first."""
        warm, cold = self.warm, self.cold
        boundary = self.boundary.candles(timeframe)
        if cold is None or (start is not None and start >= boundary):
            return warm.ohlcv_rows(exchange, symbol, timeframe, start, end, limit), "warm"
        if start is None and (end is None or end > boundary):
            # The newest candles: the warm piece, then older ones from the cold tier if the page is
            # not full (the cold tier is not asked when the warm piece fills it).
            newer = warm.ohlcv_rows(exchange, symbol, timeframe, boundary, end, limit, newest_first=True)
            if len(newer) >= limit:
                return newer, "warm"
            if not cold.holds_candles(timeframe):
                return warm.ohlcv_rows(exchange, symbol, timeframe, start, end, limit), "warm"
            older = cold.ohlcv_rows(exchange, symbol, timeframe, None, boundary, limit - len(newer))
            return older + newer, "warm+cold"
        if not cold.holds_candles(timeframe):
            return warm.ohlcv_rows(exchange, symbol, timeframe, start, end, limit), "warm"
        if end is not None and end <= boundary:
            return cold.ohlcv_rows(exchange, symbol, timeframe, start, end, limit), "cold"
        # Oldest first from start: the cold piece, then the warm one if the page is not full.
        older = cold.ohlcv_rows(exchange, symbol, timeframe, start, boundary, limit)
        if len(older) >= limit:
            return older, "cold"
        newer = warm.ohlcv_rows(exchange, symbol, timeframe, boundary, end, limit - len(older))
        return older + newer, "warm+cold"

    def trades_are_warm(self, start: datetime | None, after: tuple[int, int] | None) -> bool:
        """Whether ``trades`` would read the warm tier alone for this range."""
        cold = self.cold
        boundary = self.boundary.trades()
        resumes_warm = after is not None and after[0] >= us_from_datetime(boundary)
        return cold is None or resumes_warm or (start is not None and start >= boundary) or not cold.holds_trades()

    def trade_pieces(self, start: datetime | None, end: datetime | None, after: tuple[int, int] | None
                     ) -> list[tuple[Literal["warm", "cold"], datetime | None, datetime | None]]:
        """The pieces a whole range is read in, oldest first: (tier, start, end). A file export reads
        them one after the other; the cursor ``after`` applies to the first (every warm row of [B, end)
        comes after a cursor before B). Asks the cold tier what it holds."""
        if self.trades_are_warm(start, after):
            return [("warm", start, end)]
        boundary = self.boundary.trades()
        if end is not None and end <= boundary:
            return [("cold", start, end)]
        return [("cold", start, boundary), ("warm", boundary, end)]

    def candle_tier(self, timeframe: str, start: datetime | None, end: datetime | None) -> Tier:
        """The tiers a whole range of candles from ``start`` (oldest first) is read from."""
        cold = self.cold
        boundary = self.boundary.candles(timeframe)
        if cold is None or (start is not None and start >= boundary) or not cold.holds_candles(timeframe):
            return "warm"
        return "cold" if end is not None and end <= boundary else "warm+cold"

    def trades(self, exchange: str, symbol: str, start: datetime | None, end: datetime | None, limit: int,
               after: tuple[int, int] | None = None) -> tuple[list[StoredTrade], Tier]:
        """As ``WarehouseReader.trades``: (exchange time, trade id) order, after the cursor."""
        warm, cold = self.warm, self.cold
        boundary = self.boundary.trades()
        if self.trades_are_warm(start, after):
            return warm.trades(exchange, symbol, start, end, limit, after=after), "warm"
        assert cold is not None
        if end is not None and end <= boundary:
            return cold.trades(exchange, symbol, start, end, limit, after=after), "cold"
        older = cold.trades(exchange, symbol, start, boundary, limit, after=after)
        if len(older) >= limit:
            return older, "cold"
        # The cursor, if any, lies before B: every warm row of [B, end) comes after it.
        newer = warm.trades(exchange, symbol, boundary, end, limit - len(older))
        return older + newer, "warm+cold"
