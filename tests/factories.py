"""Small builders for test data, and an independent candle recomputation to check gold against."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from ticklake.model import RawFrame, Trade
from ticklake.warehouse.reader import TIMEFRAMES as TIMEFRAMES  # the candle tests go over every one

BASE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def trade(trade_id: int, price: str = "100.5", qty: str = "0.25", *, exchange: str = "binance",
          symbol: str = "BTC/USDT", native_symbol: str | None = None, side: str = "buy", ts_us: int | None = None,
          received_us: int | None = None, conn_id: str = "test-conn", frame_seq: int = 1) -> Trade:
    ts = BASE_US + trade_id * 1000 if ts_us is None else ts_us
    return Trade(exchange=exchange, symbol=symbol, native_symbol=native_symbol or symbol.replace("/", ""),
                 trade_id=trade_id, price=price, qty=qty, side=side,  # type: ignore[arg-type]
                 ts_us=ts, received_us=ts + 5_000 if received_us is None else received_us,
                 conn_id=conn_id, frame_seq=frame_seq)


def frame(payload: str, *, exchange: str = "binance", conn_id: str = "test-conn", frame_seq: int = 1,
          received_us: int = BASE_US, trade_count: int = 0, error: str = "") -> RawFrame:
    return RawFrame(exchange, conn_id, frame_seq, received_us, payload, error, trade_count)


@dataclass(frozen=True)
class ExpectedCandle:
    start_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    buy_volume: Decimal
    trades: int

    @property
    def vwap(self) -> Decimal:
        return self.quote_volume / self.volume


def recompute_candles(trades: list[Trade], seconds: int) -> dict[tuple[str, str, int], ExpectedCandle]:
    """OHLCV per (exchange, symbol, window start) computed in plain Python from unique trades.

    Open and close follow (exchange time, trade id) order, so trades in the same microsecond have a
    defined first and last.
    """
    unique = {(t.exchange, t.native_symbol, t.trade_id): t for t in trades}
    windows: dict[tuple[str, str, int], list[Trade]] = defaultdict(list)
    for t in unique.values():
        windows[(t.exchange, t.symbol, (t.ts_us // 1_000_000) // seconds * seconds)].append(t)
    candles = {}
    for key, members in windows.items():
        ordered = sorted(members, key=lambda t: (t.ts_us, t.trade_id))
        prices = [Decimal(t.price) for t in ordered]
        candles[key] = ExpectedCandle(
            start_s=key[2], open=prices[0], high=max(prices), low=min(prices), close=prices[-1],
            volume=sum((Decimal(t.qty) for t in ordered), Decimal(0)),
            quote_volume=sum((Decimal(t.price) * Decimal(t.qty) for t in ordered), Decimal(0)),
            buy_volume=sum((Decimal(t.qty) for t in ordered if t.side == "buy"), Decimal(0)),
            trades=len(ordered),
        )
    return candles
