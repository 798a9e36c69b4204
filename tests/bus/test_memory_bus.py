"""The embedded bus: ordered, batched, bounded (publishers wait instead of memory growing)."""

from __future__ import annotations

import asyncio

from tests.factories import frame, trade
from ticklake.bus import MemoryBus, Message, raw_topic, trades_topic


def trade_message(i: int, exchange: str = "binance") -> Message:
    return Message(trades_topic(exchange), "BTC/USDT", trade(i, exchange=exchange))


async def test_batches_keep_publish_order_and_filter_topics() -> None:
    bus = MemoryBus(maxsize=100)
    batches = bus.subscribe([raw_topic("binance"), trades_topic("binance")], max_batch=4, max_wait_s=0.01)
    await bus.publish([Message(raw_topic("binance"), "", frame("f")), trade_message(1), trade_message(2, "kraken"),
                       trade_message(3), trade_message(4), trade_message(5)])
    first = await anext(batches)
    second = await anext(batches)
    values = [m.value for m in first + second]
    assert len(first) == 4 and len(second) == 1
    assert values[0] == frame("f")
    assert [v.trade_id for v in values[1:]] == [1, 3, 4, 5]  # kraken's message went elsewhere


async def test_a_batch_is_flushed_after_max_wait_even_when_small() -> None:
    bus = MemoryBus()
    batches = bus.subscribe([trades_topic("binance")], max_batch=1000, max_wait_s=0.02)
    await bus.publish([trade_message(1)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await asyncio.wait_for(anext(batches), 1.0)
    assert [m.value.trade_id for m in batch] == [1]
    assert loop.time() - started < 0.5


async def test_publisher_waits_while_the_subscriber_is_full() -> None:
    bus = MemoryBus(maxsize=3)
    batches = bus.subscribe([trades_topic("binance")], max_batch=10, max_wait_s=0.0)
    publishing = asyncio.create_task(bus.publish([trade_message(i) for i in range(1, 8)]))
    await asyncio.sleep(0.05)
    assert not publishing.done() and bus.depth() == 3
    received: list[int] = []
    while len(received) < 7:
        received += [m.value.trade_id for m in await anext(batches)]
    await asyncio.wait_for(publishing, 1.0)
    assert received == list(range(1, 8))


async def test_a_batch_is_due_when_its_oldest_message_has_waited_max_wait() -> None:
    """Later messages join the batch of the oldest; the batch is not held longer for them."""
    bus = MemoryBus()
    batches = bus.subscribe([trades_topic("binance")], max_batch=1000, max_wait_s=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bus.publish([trade_message(1)])
    await asyncio.sleep(0.2)
    await bus.publish([trade_message(2)])
    batch = await asyncio.wait_for(anext(batches), 2.0)
    waited = loop.time() - started
    assert [m.value.trade_id for m in batch] == [1, 2]
    assert 0.28 <= waited < 0.45  # the first message's deadline, not the second's (0.5 s)


async def test_a_backlog_that_already_waited_is_handed_over_at_once_in_one_batch() -> None:
    bus = MemoryBus()
    batches = bus.subscribe([trades_topic("binance")], max_batch=1000, max_wait_s=0.1)
    await bus.publish([trade_message(i) for i in range(1, 6)])
    await asyncio.sleep(0.3)  # the subscriber was busy elsewhere meanwhile
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await asyncio.wait_for(anext(batches), 2.0)
    assert [m.value.trade_id for m in batch] == [1, 2, 3, 4, 5]
    assert loop.time() - started < 0.05


async def test_a_full_batch_does_not_wait_for_its_deadline() -> None:
    bus = MemoryBus()
    batches = bus.subscribe([trades_topic("binance")], max_batch=3, max_wait_s=30.0)
    first = asyncio.create_task(anext(batches))
    await bus.publish([trade_message(1)])
    await asyncio.sleep(0.05)
    assert not first.done()  # one message, 30 s to go
    await bus.publish([trade_message(2), trade_message(3), trade_message(4)])
    batch = await asyncio.wait_for(first, 1.0)
    assert [m.value.trade_id for m in batch] == [1, 2, 3]
    assert bus.depth() == 1  # the fourth starts the next batch
