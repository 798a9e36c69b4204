"""The live hub's provisional open candles, without a warehouse: folded from the last stored candle and
the trades not yet written, never closed, and forgotten for markets nobody follows."""

from __future__ import annotations

import time

import orjson

from tests.factories import trade
from ticklake.api.live import Channel, LiveHub


def test_a_provisional_candle_is_the_stored_one_plus_the_trades_on_their_way() -> None:
    hub = LiveHub(None)  # type: ignore[arg-type]  # no candle is read here
    subscriber = hub.subscriber()
    channel = Channel("candles", "binance", "BTC/USDT", "1m")
    hub.subscribe(subscriber, channel)
    bucket = int(time.time()) // 60 * 60
    hub.remember(channel, (bucket, "100", "110", "90", "105", "2", "210", "1", 2))

    arriving = [trade(11, price="120", qty="1", side="sell", ts_us=(bucket + 31) * 1_000_000),
                trade(10, price="95.5", qty="0.5", side="buy", ts_us=(bucket + 30) * 1_000_000)]
    hub.arrived(arriving)
    message = orjson.loads(subscriber.queue.get_nowait())
    assert message["provisional"] is True and message["closed"] is False
    assert message["candle"] == {"time": message["candle"]["time"], "open": "100", "high": "120", "low": "90",
                                 "close": "120", "volume": "3.5", "quote_volume": "377.75", "buy_volume": "1.5",
                                 "vwap": "107.928571428571428571", "trades": 4}
    # A repeat of a trade on its way counts once; a repeat of one already stored does not count.
    hub.arrived([arriving[0]])
    assert orjson.loads(subscriber.queue.get_nowait())["candle"]["trades"] == 4
    hub.committed(arriving, committed_us=1)
    hub.arrived([arriving[1]])
    assert subscriber.queue.empty()

    # Nobody follows the market's candles any more: nothing is kept for it.
    hub.unsubscribe(subscriber, channel)
    hub.committed([trade(12, ts_us=(bucket + 40) * 1_000_000)], committed_us=2)
    hub.arrived([trade(13, ts_us=(bucket + 41) * 1_000_000)])
    assert not hub._unread.get(("binance", "BTC/USDT")) and not hub._pending.get(("binance", "BTC/USDT"))
