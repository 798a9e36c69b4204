"""The drill's accounts: a trade missing, one stored twice and a candle that disagrees are each
counted, against the tape and a recomputation."""

from __future__ import annotations

from decimal import Decimal

from ticklake.drill import MODE_NAMES
from ticklake.drill.accounting import Market, ServedTrade, count, recompute
from ticklake.drill.modes import modes
from ticklake.warehouse.reader import TIMEFRAMES

S = 1_000_000  # µs


def _market(stored: list[ServedTrade], tape_ids: range) -> Market:
    served = {timeframe: recompute(stored, seconds) for timeframe, seconds in TIMEFRAMES.items()}
    return Market("binance", "BTC/USDT", {i: i * S for i in tape_ids}, stored, served)


def _trade(i: int, price: str = "100") -> ServedTrade:
    return ServedTrade(i, i * S, Decimal(price), Decimal("0.5"), "buy" if i % 2 else "sell")


def test_a_faithful_store_counts_nothing() -> None:
    stored = [_trade(i) for i in range(10, 200)]
    counts = count(_market(stored, range(0, 200)), timeframes=tuple(TIMEFRAMES))  # before id 10: never subscribed
    assert (counts.lost, counts.duplicated, counts.candle_diffs, counts.trades) == (0, 0, 0, 190)


def test_a_lost_trade_a_duplicate_and_a_wrong_candle_are_each_counted() -> None:
    stored = [_trade(i) for i in range(10, 200) if i != 70]
    market = _market(stored, range(0, 200))
    market.stored.append(_trade(150))  # stored twice
    minute = market.served["1m"][120]
    market.served["1m"][120] = (*minute[:7], minute[7] + 1)  # one trade too many in a served candle
    counts = count(market, 0, 200 * S)
    assert (counts.lost, counts.duplicated, counts.candle_diffs) == (1, 1, 1), counts.examples
    # Over a window that holds none of it, nothing is counted.
    assert (count(market, 0, 60 * S).lost, count(market, 0, 60 * S).candle_diffs) == (0, 0)


def test_recomputed_candles_order_by_time_then_id_and_count_each_id_once() -> None:
    trades = [ServedTrade(2, 5 * S, Decimal("11"), Decimal("1"), "buy"), ServedTrade(1, 5 * S, Decimal("10"),
              Decimal("2"), "sell"), ServedTrade(2, 5 * S, Decimal("11"), Decimal("1"), "buy")]
    [(start, candle)] = recompute(trades, 60).items()
    assert start == 0
    assert candle == (Decimal("10"), Decimal("11"), Decimal("10"), Decimal("11"), Decimal("3"), Decimal("31"),
                      Decimal("1"), 2)


def test_the_command_line_lists_every_mode_in_order() -> None:
    assert tuple(modes(60, 30)) == MODE_NAMES
