"""The Kafka bus against a real Kafka-protocol broker: keyed, ordered, complete, idempotent under a
broker outage (publish waits instead of buffering without bound), and consumed from the positions
the warehouse hands back."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.broker import Broker
from tests.factories import BASE_US, frame, trade
from ticklake.bus.base import PartitionKey, Position
from ticklake.bus.codec import SCHEMA_HEADER, decode
from ticklake.bus.kafka import (
    KafkaProducerBus,
    KafkaSource,
    ProducerFailedError,
    create_topics,
    read_tail,
)
from ticklake.exchanges.gaps import Gap, Resume
from ticklake.exchanges.resume import broker_resume_points
from ticklake.model import BusReject, Message, RawFrame, ResumePoint, Trade, raw_topic, trades_topic
from ticklake.settings import KafkaSettings

pytestmark = pytest.mark.integration


def unique_exchange() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def kafka_settings(bootstrap: str, **overrides: Any) -> KafkaSettings:
    values: dict[str, Any] = {"bootstrap_servers": bootstrap, "group_id": f"g-{uuid.uuid4().hex}",
                              "session_timeout_ms": 6000, "linger_ms": 2.0, "partitions": 4}
    return KafkaSettings(**{**values, **overrides})


def murmur2(data: bytes) -> int:
    """Kafka's Java ``Utils.murmur2``, unsigned 32-bit."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[length - length % 4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def java_partition(key: str, partitions: int) -> int:
    """The partition a Java producer (and Redpanda's tooling) picks for ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Read]:
    """Everything on ``topic`` (all partitions, from the start), read with a plain client."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = list(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        reads: list[Read] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (len(reads) < expected or len(at_end) < len(partitions)):
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                if message.error() is not None:
                    at_end.add(message.partition())
                    continue
                at_end.discard(message.partition())
                reads.append(Read(message.partition(), message.offset(), message.key(), message.value(),
                                  dict(message.headers() or [])))
        return reads
    finally:
        consumer.close()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test's own, to stop and restart (keeps its port and data)."""
    broker = Broker(tmp_path / "broker").start()
    try:
        yield broker
    finally:
        broker.remove()


def test_reference_murmur2_matches_kafkas_test_vectors() -> None:
    # From Kafka's UtilsTest: the partition checks below rely on this reference being right.
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
               b"a-little-bit-longer-string": -1486304829, b"abc": 479470107, b"": 275646681,
               b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    for data, signed in vectors.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data


# --- producing -----------------------------------------------------------------------------------
async def test_published_messages_arrive_once_keyed_partitioned_by_symbol_and_in_order(
        kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, partitions=4)
    exchange = unique_exchange()
    create_topics(settings, [exchange], retention_hours=1)
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT"]
    per_symbol = 150
    published: list[Message] = []
    for i in range(1, per_symbol + 1):
        for n, symbol in enumerate(symbols):
            trade_id = i * 10 + n  # ids interleave across symbols; per symbol they rise
            published.append(Message(trades_topic(exchange), symbol, trade(trade_id, exchange=exchange, symbol=symbol)))
    frames = [Message(raw_topic(exchange), symbol, frame(f'{{"s":"{symbol}","n":{i}}}', exchange=exchange,
                                                         frame_seq=i))
              for i in range(1, 21) for symbol in symbols[:2]]

    bus = KafkaProducerBus(settings)
    try:
        for start in range(0, len(published), 97):  # several publish calls of odd sizes
            await bus.publish(published[start:start + 97])
        await bus.publish(frames)
        assert await bus.flush(30) == 0
        assert bus.depth() == 0 and bus.delivery_failures == 0
    finally:
        await bus.close()

    reads = read_topic(kafka_bootstrap, trades_topic(exchange), len(published))
    assert len(reads) == len(published)
    by_symbol: dict[str, list[Read]] = defaultdict(list)
    for read in sorted(reads, key=lambda r: (r.partition, r.offset)):
        assert read.headers == {SCHEMA_HEADER: b"trade.v1"}
        assert read.key is not None
        by_symbol[read.key.decode()].append(read)
    assert set(by_symbol) == set(symbols)
    for symbol, symbol_reads in by_symbol.items():
        assert {r.partition for r in symbol_reads} == {java_partition(symbol, 4)}, symbol
        records = [decode(trades_topic(exchange), r.key, r.value, list(r.headers.items())) for r in symbol_reads]
        expected = [m.value for m in published if m.key == symbol]
        assert records == expected  # every one, once, in publish order, decoded exactly
    assert len({r.partition for r in reads}) > 1  # the symbols are spread over the partitions

    raw_reads = read_topic(kafka_bootstrap, raw_topic(exchange), len(frames))
    assert len(raw_reads) == len(frames)
    assert all(r.headers == {SCHEMA_HEADER: b"raw.v1"} for r in raw_reads)
    for symbol in symbols[:2]:
        mine = sorted((r for r in raw_reads if r.key == symbol.encode()), key=lambda r: r.offset)
        assert [decode(raw_topic(exchange), r.key, r.value, list(r.headers.items())) for r in mine] == [
            m.value for m in frames if m.key == symbol]


@pytest.mark.slow
async def test_publish_waits_while_the_broker_is_away_then_delivers_everything_exactly_once(
        own_broker: Broker) -> None:
    bound = 100
    settings = kafka_settings(own_broker.bootstrap, partitions=2, max_buffered_messages=bound)
    exchange = unique_exchange()
    topic = trades_topic(exchange)
    create_topics(settings, [exchange], retention_hours=1)
    symbols = ("BTC/USDT", "ETH/USDT")
    total = 1010

    def batch(ids: range) -> list[Message]:
        return [Message(topic, symbols[i % 2], trade(i, exchange=exchange, symbol=symbols[i % 2])) for i in ids]

    bus = KafkaProducerBus(settings)
    publishing: asyncio.Task[None] | None = None
    try:
        await bus.publish(batch(range(1, 11)))  # connected and delivering before the outage
        assert await bus.flush(20) == 0

        own_broker.stop()
        publishing = asyncio.create_task(bus.publish(batch(range(11, 1011))))
        deepest = 0
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            deepest = max(deepest, bus.depth())
            assert not publishing.done(), "publish returned although the broker could take nothing"
        assert bound // 2 <= deepest <= bound  # it filled up to the bound, never beyond

        own_broker.restart()  # same port, same data
        await asyncio.wait_for(publishing, 25)
        assert await bus.flush(25) == 0
        assert bus.delivery_failures == 0
    finally:
        if publishing is not None and not publishing.done():
            publishing.cancel()
        await bus.close(timeout_s=5)

    reads = read_topic(own_broker.bootstrap, topic, total)
    ids = [decode(topic, r.key, r.value, list(r.headers.items())) for r in sorted(reads, key=lambda r: (
        r.partition, r.offset))]
    trade_ids = [t.trade_id for t in ids if isinstance(t, Trade)]
    assert len(trade_ids) == len(reads) == total  # nothing lost, nothing duplicated by the retries
    assert sorted(trade_ids) == list(range(1, total + 1))
    for symbol in symbols:  # and each symbol still in publish order
        mine = [t.trade_id for t in ids if isinstance(t, Trade) and t.symbol == symbol]
        assert mine == sorted(mine)


@pytest.mark.slow
async def test_a_producer_that_lost_its_sequence_fails_loudly_and_is_renewed(own_broker: Broker) -> None:
    # The broker loses acknowledged messages (the test broker writes to disk a moment after acking;
    # in production: an unclean leader election). The idempotent producer then cannot go on: publish
    # must say so, not fail forever with a generic error nor wait forever; a fresh producer (renew)
    # publishes again, and the feed role checks what the broker holds and backfills (Platform).
    settings = kafka_settings(own_broker.bootstrap, partitions=1)
    exchange = unique_exchange()
    topic = trades_topic(exchange)
    create_topics(settings, [exchange], retention_hours=1)
    await asyncio.sleep(3)  # let the topic itself reach the broker's disk

    def batch(ids: range) -> list[Message]:
        return [Message(topic, "BTC/USDT", trade(i, exchange=exchange)) for i in ids]

    bus = KafkaProducerBus(settings)
    try:
        await bus.publish(batch(range(1, 201)))
        assert await bus.flush(20) == 0
        own_broker.stop(signal.SIGKILL)  # before those 200 reached the broker's disk
        own_broker.start()
        if len(read_topic(own_broker.bootstrap, topic, 200, timeout_s=3)) == 200:
            pytest.skip("this broker kept every acknowledged message: nothing to detect")

        async def keep_publishing() -> None:
            for start in range(201, 100_000, 100):
                await bus.publish(batch(range(start, start + 100)))
                await asyncio.sleep(0.05)

        with pytest.raises(ProducerFailedError, match="OUT_OF_ORDER_SEQUENCE_NUMBER"):
            await asyncio.wait_for(keep_publishing(), 20)
        assert "OUT_OF_ORDER_SEQUENCE_NUMBER" in bus.fatal
        with pytest.raises(ProducerFailedError):  # and it stays failed
            await bus.publish(batch(range(1, 2)))
        assert bus.broker_lost  # the lost connection was seen: what the broker holds is worth a check

        await bus.renew()
        assert not bus.fatal
        await bus.publish(batch(range(500_001, 500_101)))
        assert await bus.flush(20) == 0
        reads = read_topic(own_broker.bootstrap, topic, 10**9, timeout_s=5)
        arrived = {t.trade_id for r in reads if isinstance(t := decode(topic, r.key, r.value,
                                                                         list(r.headers.items())), Trade)}
        assert set(range(500_001, 500_101)) <= arrived
    finally:
        started = time.monotonic()
        await asyncio.wait_for(bus.close(timeout_s=5), 15)
    assert time.monotonic() - started < 3  # a failed producer is not flushed for the whole timeout

# --- the feed's start ----------------------------------------------------------------------------
async def test_broker_resume_points_give_the_newest_trade_and_the_holes_below_it_per_market(
        kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, partitions=3)
    binance, kraken, absent = unique_exchange(), unique_exchange(), unique_exchange()
    create_topics(settings, [binance, kraken], retention_hours=1)
    late_ts = BASE_US + 10**9

    def on(exchange: str, symbol: str, trade_id: int, **fields: Any) -> Message:
        return Message(trades_topic(exchange), symbol, trade(trade_id, exchange=exchange, symbol=symbol, **fields))

    # BTC/USDT: 1..100 where 60 arrives last (a backfilled trade, older id, newest exchange time).
    messages = [on(binance, "BTC/USDT", i) for i in [*range(1, 60), *range(61, 101)]]
    messages.append(on(binance, "BTC/USDT", 60, ts_us=late_ts))
    # ETH/USDT: 8 never arrived (a backfill that did not finish): resume at 9, and backfill 8.
    messages += [on(binance, "ETH/USDT", i) for i in (5, 6, 9, 7)]
    messages.append(on(kraken, "BTC/USD", 2**62, native_symbol="XBT/USD", ts_us=late_ts))
    # SOL/USDT: the stream's 200..210, then a backfill's page with old ids 150..152: the ids between
    # were published before what is read, not lost.
    messages += [on(binance, "SOL/USDT", i) for i in range(200, 211)]
    messages += [on(binance, "SOL/USDT", i, conn_id="binance-rest-1") for i in (150, 151, 152)]
    messages.append(Message(raw_topic(binance), "BTC/USDT", frame('{"t":999999}', exchange=binance)))
    bus = KafkaProducerBus(settings)
    try:
        await bus.publish(messages)
        assert await bus.flush(20) == 0
    finally:
        await bus.close()
    # Something that is not a trade on the trades topic is skipped, not fatal.
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(trades_topic(binance), b"\xff not json", b"BTC/USDT", headers=[(SCHEMA_HEADER, b"trade.v1")])
    assert producer.flush(10) == 0

    every = [trades_topic(exchange) for exchange in (binance, kraken, absent)]
    points = await asyncio.to_thread(broker_resume_points, partial(read_tail, settings, every))
    assert points == {
        (binance, "BTCUSDT"): Resume(ResumePoint(100, trade(100).ts_us), []),  # the newest id with its own time
        (binance, "ETHUSDT"): Resume(ResumePoint(9, trade(9).ts_us), [Gap("ETHUSDT", 8, 8, trade(7).ts_us,
                                                                          trade(9).ts_us)]),
        (kraken, "XBT/USD"): Resume(ResumePoint(2**62, late_ts), []),
        (binance, "SOLUSDT"): Resume(ResumePoint(210, trade(210).ts_us), []),
    }
    # Asking for a market that never traded still returns (after reading what there is), without it.
    wanted = {(binance, "BTCUSDT"), (binance, "DOGEUSDT")}
    started = time.monotonic()
    tail = partial(read_tail, settings, [trades_topic(binance)], window=50, max_per_partition=200_000, timeout_s=20)
    points = await asyncio.to_thread(broker_resume_points, tail, wanted)
    assert set(points) == {(binance, "BTCUSDT"), (binance, "ETHUSDT"), (binance, "SOLUSDT")}
    assert points[(binance, "BTCUSDT")] == Resume(ResumePoint(100, trade(100).ts_us), [])
    assert time.monotonic() - started < 15


async def test_broker_resume_points_of_empty_topics_are_empty(kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap)
    exchange = unique_exchange()
    create_topics(settings, [exchange], retention_hours=1)
    tail = partial(read_tail, settings, [trades_topic(exchange), trades_topic(unique_exchange())])
    assert await asyncio.to_thread(broker_resume_points, tail) == {}


# --- consuming -----------------------------------------------------------------------------------
async def consume(source: KafkaSource, until: int, timeout_s: float = 40.0) -> list[Message]:
    """Messages from ``source`` until ``until`` of them arrived (group join can take seconds here)."""
    received: list[Message] = []

    async def collect() -> None:
        async for batch in source.batches():
            received.extend(batch)
            if len(received) >= until:
                return

    try:
        await asyncio.wait_for(collect(), timeout_s)
    except TimeoutError:
        pytest.fail(f"only {len(received)} of {until} messages within {timeout_s} s; assigned {source.assigned}")
    return received


async def test_source_starts_where_the_positions_say_and_passes_poison_through_in_order(
        kafka_bootstrap: str) -> None:
    settings = kafka_settings(kafka_bootstrap, partitions=2)
    exchange = unique_exchange()
    trades, raws = trades_topic(exchange), raw_topic(exchange)
    create_topics(settings, [exchange], retention_hours=1)
    partition = java_partition("BTC/USDT", 2)

    bus = KafkaProducerBus(settings)
    try:
        await bus.publish([Message(trades, "BTC/USDT", trade(i, exchange=exchange)) for i in range(1, 11)])
        await bus.publish([Message(raws, "BTC/USDT", frame("f1", exchange=exchange, frame_seq=1)),
                           Message(raws, "BTC/USDT", frame("f2", exchange=exchange, frame_seq=2))])
        assert await bus.flush(20) == 0
        # Poison, as another (broken) producer might write it: offsets 10 and 11 of the same partition.
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(trades, b"{not json", b"BTC/USDT", partition=partition,
                         headers=[(SCHEMA_HEADER, b"trade.v1")])
        producer.produce(trades, b'{"price": 1}', b"BTC/USDT", partition=partition)
        assert producer.flush(10) == 0
        await bus.publish([Message(trades, "BTC/USDT", trade(i, exchange=exchange)) for i in (11, 12)])
        assert await bus.flush(20) == 0
    finally:
        await bus.close()

    # A resumed ingester: the warehouse holds offsets up to 6 of the trades partition, completely up to 3.
    asked: list[list[PartitionKey]] = []

    def positions(keys: list[PartitionKey]) -> dict[PartitionKey, Position]:
        asked.append(list(keys))
        return {(trades, partition): Position(next_offset=4, written_through=6)}

    source = KafkaSource(settings, [trades, raws], positions, max_batch=5, max_wait_s=0.1)
    try:
        received = await consume(source, until=10 + 2)
    finally:
        await source.close()

    assert asked and set(asked[0]) == {(trades, 0), (trades, 1), (raws, 0), (raws, 1)}
    from_trades = [m for m in received if m.topic == trades]
    assert [m.offset for m in from_trades] == list(range(4, 14))
    assert all(m.partition == partition and m.key == "BTC/USDT" for m in from_trades)
    assert [m.replayed for m in from_trades] == [m.offset <= 6 for m in from_trades]
    assert [m.offset for m in from_trades if m.replayed] == [4, 5, 6]
    values = [m.value for m in from_trades]
    assert values[:6] == [trade(i, exchange=exchange) for i in range(5, 11)]
    poison = values[6:8]
    assert isinstance(poison[0], BusReject) and poison[0].reason == "undecodable"
    assert poison[0].value == "{not json" and poison[0].key == "BTC/USDT"
    assert isinstance(poison[1], BusReject) and poison[1].reason == "unknown_schema"
    assert values[8:] == [trade(11, exchange=exchange), trade(12, exchange=exchange)]  # consumption went on
    # The raw topic had no position: it is read from its start, nothing replayed.
    from_raw = [m for m in received if m.topic == raws]
    assert [(m.offset, m.replayed) for m in from_raw] == [(0, False), (1, False)]
    assert [m.value.payload for m in from_raw if isinstance(m.value, RawFrame)] == ["f1", "f2"]

    # A fresh warehouse (nothing stored, Position(None, -1)) reads everything from the beginning.
    fresh = kafka_settings(kafka_bootstrap, partitions=2)
    source = KafkaSource(fresh, [trades], lambda keys: {key: Position(None, -1) for key in keys},
                         max_batch=1000, max_wait_s=0.1)
    try:
        received = await consume(source, until=14)
    finally:
        await source.close()
    assert [m.offset for m in received] == list(range(14))
    assert not any(m.replayed for m in received)
    assert [type(m.value).__name__ for m in received] == ["Trade"] * 10 + ["BusReject"] * 2 + ["Trade"] * 2
