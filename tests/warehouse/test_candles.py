"""Gold candles equal an independent recomputation from the stored trades, for all six timeframes,
whatever the arrival order, batching, equal timestamps or repeated deliveries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import empty_layers
from tests.factories import BASE_US, TIMEFRAMES, recompute_candles, trade
from ticklake.model import Trade
from ticklake.settings import ValidationSettings
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.writer import WarehouseWriter

MARKETS = (("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD"))

prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("99999"), places=8, allow_nan=False)
quantities = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("50"), places=8, allow_nan=False)
# Few distinct instants, so many trades share a microsecond; spread over two days so 1d windows split.
instants = st.sampled_from([0, 1, 59_999_999, 60_000_000, 299_999_999, 3_599_999_999, 86_399_999_999,
                            86_400_000_000, 90_000_123_456])


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[Trade], list[list[Trade]]]:
    """A tape of unique trades, and the batches it arrives in: shuffled, with repeats."""
    tape: list[Trade] = []
    for market_index, (exchange, symbol) in enumerate(MARKETS):
        count = draw(st.integers(0, 25))
        ids = draw(st.lists(st.integers(1, 10_000), min_size=count, max_size=count, unique=True))
        for trade_id in ids:
            tape.append(trade(
                trade_id, str(draw(prices)), str(draw(quantities)), exchange=exchange, symbol=symbol,
                side=draw(st.sampled_from(["buy", "sell", "unknown"])),
                ts_us=BASE_US + draw(instants) + market_index, received_us=BASE_US + 100_000_000_000,
            ))
    repeats = draw(st.lists(st.sampled_from(tape), max_size=10)) if tape else []
    arrival = draw(st.permutations(tape + repeats))
    batches: list[list[Trade]] = []
    while arrival:
        size = draw(st.integers(1, max(1, len(arrival))))
        batches.append(arrival[:size])
        arrival = arrival[size:]
    # A batch delivered twice (a retried send) must be stored once.
    if batches and draw(st.booleans()):
        batches.append(batches[draw(st.integers(0, len(batches) - 1))])
    return tape, batches


def stored_candles(reader: WarehouseReader, timeframe: str) -> dict[tuple[str, str, int], tuple[object, ...]]:
    found = {}
    for exchange, symbol in MARKETS:
        for c in reader.ohlcv(exchange, symbol, timeframe, None, None, 10_000):
            found[(exchange, symbol, int(c.start.timestamp()))] = (
                c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.buy_volume, c.trades, c.vwap)
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(deliveries())
def test_gold_equals_recomputation_for_every_timeframe(
    warehouse: Client, delivered: tuple[list[Trade], list[list[Trade]]]
) -> None:
    tape, batches = delivered
    empty_layers(warehouse)
    writer = WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650))
    for batch in batches:
        writer.write([], batch)
    reader = WarehouseReader(warehouse)

    assert reader.layer_counts()["silver_trades"] == len(tape)
    for name, seconds in TIMEFRAMES.items():
        expected = {
            key: (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.buy_volume, c.trades, c.vwap)
            for key, c in recompute_candles(tape, seconds).items()
        }
        assert stored_candles(reader, name) == expected, name


def test_equal_timestamps_break_ties_by_trade_id(warehouse: Client) -> None:
    same_instant = BASE_US + 30_000_000
    # Arrives newest id first; open must still be the lowest id's price, close the highest id's.
    batch = [trade(3, "103", ts_us=same_instant), trade(1, "101", ts_us=same_instant),
             trade(2, "102", ts_us=same_instant)]
    WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650)).write([], batch)
    [candle] = WarehouseReader(warehouse).ohlcv("binance", "BTC/USDT", "1m", None, None, 10)
    assert (candle.open, candle.close, candle.high, candle.low) == (101, 103, 103, 101)


def test_quote_volume_and_vwap_are_exact(warehouse: Client) -> None:
    batch = [trade(1, "0.1", "0.3"), trade(2, "0.2", "0.1", side="sell")]
    WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650)).write([], batch)
    [candle] = WarehouseReader(warehouse).ohlcv("binance", "BTC/USDT", "1h", None, None, 10)
    assert candle.quote_volume == Decimal("0.05")  # 0.03 + 0.02, no float error
    assert candle.volume == Decimal("0.4") and candle.buy_volume == Decimal("0.3")
    assert candle.vwap == Decimal("0.125")


def test_newest_and_oldest_candles_across_gaps_in_history(warehouse: Client) -> None:
    """The API aggregates a window anchored on the first or last candle and widens it over gaps."""
    day = 86_400_000_000
    minutes = [0, 1, 2, 3, 4, 40 * day // 60_000_000, 400 * day // 60_000_000, 400 * day // 60_000_000 + 1]
    batch = [trade(i + 1, str(100 + i), ts_us=BASE_US + m * 60_000_000) for i, m in enumerate(minutes)]
    WarehouseWriter(warehouse, ValidationSettings(max_age_days=3650)).write([], batch)
    reader = WarehouseReader(warehouse)
    starts = [int((BASE_US + m * 60_000_000) / 1e6) for m in minutes]
    for limit in (1, 2, 3, 6, 8, 20):
        newest = reader.ohlcv("binance", "BTC/USDT", "1m", None, None, limit)
        assert [int(c.start.timestamp()) for c in newest] == starts[-limit:], limit
        oldest = reader.ohlcv("binance", "BTC/USDT", "1m", datetime.fromtimestamp(starts[0], UTC), None, limit)
        assert [int(c.start.timestamp()) for c in oldest] == starts[:limit], limit
