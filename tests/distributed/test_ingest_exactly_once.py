"""Exactly once from a Kafka bus into every layer, with the bus positions kept in the warehouse.

Real broker (noida-db on loopback, one per test), real ClickHouse engine (the session's chdb warehouse),
the real KafkaProducerBus / KafkaSource / Ingester / WarehouseWriter. Crashes are simulated inside the
process: a hook on a writer's inserts fails one insert and cancels that ingester's task, which then
never inserts again (as a killed process would not), and its consumer leaves the group.

Every check compares the layers with what was published: bronze and silver hold each trade once, raw
frames hold each frame message once, gold equals an independent recomputation from the trades, and
``bus_positions`` ends at the topics' end offsets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.broker import Broker
from tests.factories import BASE_US, TIMEFRAMES, frame, recompute_candles, trade
from ticklake.bus import topics_for
from ticklake.bus.base import PartitionKey, Position
from ticklake.bus.codec import SCHEMA_HEADER, Headers, encode
from ticklake.bus.kafka import KafkaProducerBus, KafkaSource, create_topics
from ticklake.model import BusReject, Message, Trade, raw_topic, trades_topic
from ticklake.settings import IngestSettings, KafkaSettings, ValidationSettings
from ticklake.warehouse.ingest import Ingester
from ticklake.warehouse.reader import WarehouseReader
from ticklake.warehouse.writer import Plan, WarehouseWriter

pytestmark = pytest.mark.integration

T = TypeVar("T")

LENIENT = ValidationSettings(max_age_days=3650)  # the synthetic trades are from 2026-01-01
EXCHANGES = ["binance", "kraken"]
Market = tuple[str, str]  # (exchange, canonical symbol)
MARKETS: list[Market] = [("binance", "BTC/USDT"), ("binance", "ETH/USDT"), ("kraken", "BTC/USD")]
Origin = tuple[str, int, int]
TIMEOUT_S = 30.0


# --- the broker, the clients -------------------------------------------------------------------
@pytest.fixture
def bootstrap(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own: the topic names are fixed per venue, so tests must not share one."""
    broker = Broker(tmp_path / "broker").start()
    try:
        yield broker.bootstrap
    finally:
        broker.remove()


def kafka_settings(bootstrap: str, group: str, partitions: int = 2) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=bootstrap, group_id=group, partitions=partitions, session_timeout_ms=6000,
                         linger_ms=1, client_id=f"test-{group}")


def make_topics(settings: KafkaSettings) -> None:
    statuses = create_topics(settings, EXCHANGES, retention_hours=1)
    assert all(s.partitions == settings.partitions for s in statuses), statuses


def end_offsets(settings: KafkaSettings) -> dict[PartitionKey, int]:
    """The next offset the broker would give each non-empty partition of the venues' topics."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "test-watermarks"})
    try:
        topics = consumer.list_topics(timeout=10).topics
        ends = {}
        for topic in topics_for(EXCHANGES):
            for partition in topics[topic].partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if high > 0:
                    ends[(topic, partition)] = high
        return ends
    finally:
        consumer.close()


class Warehouse:
    """The test's side of the warehouse: every query on the warehouse thread the ingesters use (one
    chdb session, one thread at a time)."""

    def __init__(self, client: Client, executor: ThreadPoolExecutor) -> None:
        self.client = client
        self.executor = executor

    async def run(self, step: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, step)

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return await self.run(lambda: [tuple(r) for r in self.client.query(sql).result_rows])

    async def command(self, sql: str) -> None:
        await self.run(lambda: self.client.command(sql))

    async def positions(self) -> dict[PartitionKey, int]:
        rows = await self.rows("SELECT topic, partition, max(next_offset) FROM bus_positions GROUP BY topic, partition")
        return {(str(t), int(p)): int(n) for t, p, n in rows}

    async def written_through(self) -> dict[PartitionKey, int]:
        """The highest offset any stored row came from, per partition (computed here independently)."""
        rows = await self.rows(
            "SELECT t, p, max(o) FROM ("
            " SELECT bus_topic AS t, bus_partition AS p, bus_offset AS o FROM raw_frames WHERE bus_offset >= 0"
            " UNION ALL SELECT bus_topic, bus_partition, bus_offset FROM bronze_trades WHERE bus_offset >= 0"
            " UNION ALL SELECT topic, partition, offset FROM bus_dead_letters) GROUP BY t, p")
        return {(str(t), int(p)): int(o) for t, p, o in rows}

    async def wait_written(self, settings: KafkaSettings, timeout_s: float = TIMEOUT_S) -> dict[PartitionKey, int]:
        """Wait until the stored positions reach the topics' end offsets (positions go last in a batch:
        then every row before them is stored)."""
        deadline = time.monotonic() + timeout_s
        ends = end_offsets(settings)
        while True:
            positions = await self.positions()
            if positions == ends:
                return ends
            if time.monotonic() > deadline:
                raise AssertionError(f"not everything was written in {timeout_s} s: {positions} != {ends}")
            await asyncio.sleep(0.05)
            ends = end_offsets(settings)

    async def counts(self) -> dict[str, int]:
        counts = await self.run(lambda: WarehouseReader(self.client).layer_counts())
        [(dead,)] = await self.rows("SELECT count() FROM bus_dead_letters")
        return {**counts, "bus_dead_letters": int(dead)}

    async def assert_exactly_once(self, tape: Sequence[Trade], frames: int) -> None:
        """Bronze and silver hold every trade of ``tape`` once, nothing else; raw frames hold ``frames``
        rows, each from its own bus message; gold equals a recomputation from the tape."""
        expected = sorted({(t.exchange, t.native_symbol, t.trade_id) for t in tape})
        for table in ("bronze_trades", "silver_trades"):
            rows = await self.rows(f"SELECT exchange, native_symbol, trade_id FROM {table}")
            stored = sorted((str(e), str(n), int(i)) for e, n, i in rows)
            assert stored == expected, f"{table}: {len(stored)} rows for {len(expected)} trades"
        [(raw, distinct_origins)] = await self.rows(
            "SELECT count(), uniqExact(bus_topic, bus_partition, bus_offset) FROM raw_frames")
        assert (raw, distinct_origins) == (frames, frames)
        # Every row knows the message it came from, and no two bronze rows came from one message.
        [(no_origin, bronze_origins)] = await self.rows(
            "SELECT (SELECT countIf(bus_offset < 0) FROM raw_frames) + countIf(bus_offset < 0),"
            " uniqExact(bus_topic, bus_partition, bus_offset) FROM bronze_trades")
        assert (no_origin, bronze_origins) == (0, len(expected))
        [(dead,)] = await self.rows("SELECT count() FROM dead_letters")
        assert dead == 0
        await self.assert_gold(tape)

    async def assert_gold(self, tape: Sequence[Trade]) -> None:
        reader = WarehouseReader(self.client)
        unique = list({(t.exchange, t.native_symbol, t.trade_id): t for t in tape}.values())
        for name, seconds in TIMEFRAMES.items():
            expected = {key: (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.buy_volume, c.trades)
                        for key, c in recompute_candles(unique, seconds).items()}

            def stored(name: str = name) -> dict[tuple[str, str, int], tuple[object, ...]]:
                found: dict[tuple[str, str, int], tuple[object, ...]] = {}
                for exchange, symbol in {(t.exchange, t.symbol) for t in unique}:
                    for c in reader.ohlcv(exchange, symbol, name, None, None, 100_000):
                        found[(exchange, symbol, int(c.start.timestamp()))] = (
                            c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.buy_volume, c.trades)
                return found

            assert await self.run(stored) == expected, name


@pytest.fixture
async def wh(warehouse: Client) -> AsyncIterator[Warehouse]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-warehouse")
    try:
        yield Warehouse(warehouse, executor)
    finally:
        executor.shutdown(wait=True)


# --- ingesters -----------------------------------------------------------------------------------
@dataclass
class Member:
    """One ingester of the consumer group: what a `ticklake ingest` process runs (platform.py)."""

    ingester: Ingester
    source: KafkaSource
    writer: WarehouseWriter
    task: asyncio.Task[None]
    seen: list[Message] = field(default_factory=list)  # every message handed to the writer
    closed: bool = False

    @property
    def replayed(self) -> set[Origin]:
        return {(m.topic, m.partition, m.offset) for m in self.seen if m.replayed}

    @property
    def origins(self) -> set[Origin]:
        return {(m.topic, m.partition, m.offset) for m in self.seen}

    async def wait_assigned(self, count: int | None = None, timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.source.assigned or (count is not None and len(self.source.assigned) != count):
            assert not self.task.done(), "the ingester stopped"
            assert time.monotonic() < deadline, f"no assignment in {timeout_s} s: {self.source.assigned}"
            await asyncio.sleep(0.02)

    async def leave(self) -> None:
        """The consumer leaves the group (once)."""
        if not self.closed:
            self.closed = True
            await self.source.close()

    async def stop(self) -> None:
        """A clean stop (or the end of a crashed member): the task ends, the consumer leaves the group."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.leave()


def start_member(wh: Warehouse, settings: KafkaSettings, writer: WarehouseWriter | None = None,
                 max_batch: int = 10_000, max_wait_s: float = 0.05) -> Member:
    writer = writer or WarehouseWriter(wh.client, LENIENT)
    ingester: Ingester | None = None

    def positions(keys: list[PartitionKey]) -> dict[PartitionKey, Position]:
        assert ingester is not None
        return ingester.load_positions(keys)

    source = KafkaSource(settings, topics_for(EXCHANGES), positions, max_batch, max_wait_s)
    ingester = Ingester(source, writer, IngestSettings(), EXCHANGES, executor=wh.executor)
    member = Member(ingester, source, writer, asyncio.create_task(ingester.run()))
    plan_messages = writer.plan_messages

    def spy(messages: Sequence[Message]) -> Plan:
        member.seen.extend(messages)
        return plan_messages(messages)

    writer.plan_messages = spy  # type: ignore[method-assign]
    return member


def crash_after(member: Member, table: str, *, insert_first: bool, armed: threading.Event | None = None
                ) -> asyncio.Event:
    """Make ``member`` die at its next insert into ``table`` (once ``armed`` is set): that insert
    lands or not (``insert_first``), then the task is cancelled and no later insert of the batch runs."""
    loop = asyncio.get_running_loop()
    crashed = asyncio.Event()
    fired = threading.Event()
    insert_table = member.writer._insert_table

    def hooked(plan: Plan, name: str) -> None:
        hit = (name == table and name in plan.tables and not fired.is_set()
               and (armed is None or armed.is_set()))
        if hit:
            fired.set()
            if insert_first:
                insert_table(plan, name)
            loop.call_soon_threadsafe(member.task.cancel)
            loop.call_soon_threadsafe(crashed.set)
            raise RuntimeError(f"killed at the {name} insert")
        insert_table(plan, name)

    member.writer._insert_table = hooked  # type: ignore[method-assign,assignment]
    return crashed


# --- what is published ---------------------------------------------------------------------------
@dataclass
class Tape:
    """What the test published, and the unique trades it expects stored."""

    trades: list[Trade] = field(default_factory=list)  # unique
    frames: int = 0  # raw frame messages
    next_id: dict[Market, int] = field(default_factory=dict)
    frame_seq: int = 0

    def round(self, markets: Sequence[Market], per_market: int, repeat: int = 0) -> list[Message]:
        """Per market: one frame carrying ``per_market`` new trades, each trade as its own message;
        then, if ``repeat``, a reconnect snapshot: another frame repeating the last ``repeat`` trades."""
        messages: list[Message] = []
        for index, (exchange, symbol) in enumerate(markets):
            first = self.next_id.get((exchange, symbol), 1)
            self.next_id[(exchange, symbol)] = first + per_market
            self.frame_seq += 1
            new = [self._trade(exchange, symbol, index, i, self.frame_seq) for i in range(first, first + per_market)]
            self.trades.extend(new)
            messages.append(self._frame(exchange, symbol, new))
            messages += [Message(trades_topic(exchange), symbol, t) for t in new]
            if repeat:
                self.frame_seq += 1
                again = [self._trade(exchange, symbol, index, t.trade_id, self.frame_seq) for t in new[-repeat:]]
                messages.append(self._frame(exchange, symbol, again))
                messages += [Message(trades_topic(exchange), symbol, t) for t in again]
        return messages

    def snapshot(self, markets: Sequence[Market], first_id: int, count: int) -> list[Message]:
        """Per market: a frame repeating ``count`` trades already published, from ``first_id`` on."""
        messages: list[Message] = []
        for index, (exchange, symbol) in enumerate(markets):
            self.frame_seq += 1
            again = [self._trade(exchange, symbol, index, i, self.frame_seq) for i in range(first_id, first_id + count)]
            messages.append(self._frame(exchange, symbol, again))
            messages += [Message(trades_topic(exchange), symbol, t) for t in again]
        return messages

    @staticmethod
    def _trade(exchange: str, symbol: str, market_index: int, trade_id: int, frame_seq: int) -> Trade:
        # 7 s apart: one-minute windows hold several trades, longer ones many; prices and sides vary.
        ts_us = BASE_US + trade_id * 7_000_000 + market_index
        return trade(trade_id, f"{100 + (trade_id * 37) % 101}.{trade_id % 7}", f"0.{1 + trade_id % 9}",
                     exchange=exchange, symbol=symbol, side=("buy", "sell")[trade_id % 2], ts_us=ts_us,
                     conn_id=f"{exchange}-conn", frame_seq=frame_seq)

    def _frame(self, exchange: str, symbol: str, trades: list[Trade]) -> Message:
        self.frames += 1
        payload = json.dumps({"symbol": symbol, "ids": [t.trade_id for t in trades]})
        value = frame(payload, exchange=exchange, conn_id=f"{exchange}-conn", frame_seq=self.frame_seq,
                      received_us=trades[-1].received_us, trade_count=len(trades))
        return Message(raw_topic(exchange), symbol, value)


@pytest.fixture
async def bus(bootstrap: str) -> AsyncIterator[KafkaProducerBus]:
    """What the feed handlers publish with."""
    producer = KafkaProducerBus(kafka_settings(bootstrap, "feed"))
    try:
        yield producer
    finally:
        await producer.close(10)


async def publish(bus: KafkaProducerBus, messages: Sequence[Message]) -> None:
    await bus.publish(messages)
    assert await bus.flush(10) == 0


# --- 1. end to end -------------------------------------------------------------------------------
async def test_end_to_end_every_trade_once_and_positions_at_the_end_offsets(
        bootstrap: str, bus: KafkaProducerBus, wh: Warehouse) -> None:
    settings = kafka_settings(bootstrap, "e2e")
    make_topics(settings)
    tape = Tape()
    member = start_member(wh, settings)
    try:
        await member.wait_assigned(len(topics_for(EXCHANGES)) * settings.partitions)
        # Published while the ingester runs, in several sends: batches cut anywhere.
        for _ in range(4):
            await publish(bus, tape.round(MARKETS, per_market=12, repeat=3))
        ends = await wh.wait_written(settings)
        # Then a snapshot repeating trades of batches written long ago: found in bronze, not stored again.
        await publish(bus, tape.snapshot(MARKETS, first_id=3, count=10))
        ends = await wh.wait_written(settings)
    finally:
        await member.stop()

    await wh.assert_exactly_once(tape.trades, tape.frames)
    assert await wh.positions() == ends
    assert set(ends) == {(t, p) for t, p, _o in member.origins}  # every partition that holds messages
    assert member.replayed == set()


# --- 2. positions live in the warehouse ----------------------------------------------------------
async def test_a_new_consumer_group_resumes_from_the_warehouse_positions(
        bootstrap: str, bus: KafkaProducerBus, wh: Warehouse) -> None:
    first_settings = kafka_settings(bootstrap, "first")
    make_topics(first_settings)
    tape = Tape()
    await publish(bus, tape.round(MARKETS, per_market=20, repeat=4))
    first = start_member(wh, first_settings)
    try:
        await wh.wait_written(first_settings)
    finally:
        await first.stop()
    before = await wh.counts()
    stored_positions = await wh.positions()

    # More, including a snapshot of trades stored before the stop; then a group the broker knows
    # nothing about: its start can only come from the warehouse.
    await publish(bus, tape.round(MARKETS, per_market=15, repeat=2) + tape.snapshot(MARKETS, 1, 5))
    second_settings = kafka_settings(bootstrap, "second")
    second = start_member(wh, second_settings)
    try:
        ends = await wh.wait_written(second_settings)
    finally:
        await second.stop()

    # Nothing read again: every message the new group read lies at or after the stored positions.
    assert second.seen
    for topic, partition, offset in second.origins:
        assert offset >= stored_positions.get((topic, partition), 0)
    assert second.replayed == set()
    after = await wh.counts()
    new_trades = 15 * len(MARKETS)
    assert after["bronze_trades"] == before["bronze_trades"] + new_trades
    assert after["silver_trades"] == before["silver_trades"] + new_trades
    assert after["raw_frames"] == before["raw_frames"] + 3 * len(MARKETS)  # not doubled
    await wh.assert_exactly_once(tape.trades, tape.frames)
    assert await wh.positions() == ends


# --- 3. poison messages --------------------------------------------------------------------------
async def test_poison_messages_are_dead_lettered_once_and_replays_store_nothing_twice(
        bootstrap: str, bus: KafkaProducerBus, wh: Warehouse) -> None:
    settings = kafka_settings(bootstrap, "poison")
    make_topics(settings)
    tape = Tape()
    btc = [("binance", "BTC/USDT")]
    trade_value = encode(trade(1))[0]
    poison: list[tuple[str, bytes, Headers | None, str]] = [  # (topic, value, headers, reason)
        (trades_topic("binance"), b'{"exchange": "binance", "trade_id": ', [(SCHEMA_HEADER, b"trade.v1")],
         "undecodable"),
        (trades_topic("binance"), trade_value, [(SCHEMA_HEADER, b"trade.v2")], "unknown_schema"),
        (trades_topic("binance"), b"just some text", None, "unknown_schema"),
        (raw_topic("binance"), b'{"exchange": "binance"}', [(SCHEMA_HEADER, b"trade.v1")], "wrong_schema_for_topic"),
    ]
    # The same key and partitioner as ticklake's producer: the poison lands between good messages of
    # the same partitions.
    raw_producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    delivered: list[Origin] = []

    def on_delivery(error: Any, message: Any) -> None:
        assert error is None
        delivered.append((message.topic(), message.partition(), message.offset()))

    await publish(bus, tape.round(btc, per_market=10, repeat=2))
    for topic, value, headers, _reason in poison:
        raw_producer.produce(topic, value, b"BTC/USDT", headers=headers, on_delivery=on_delivery)
        assert raw_producer.flush(10) == 0
        await publish(bus, tape.round(MARKETS, per_market=3))
    assert len(delivered) == len(poison)

    member = start_member(wh, settings)
    try:
        await wh.wait_written(settings)
    finally:
        await member.stop()

    async def dead_lettered() -> list[tuple[Any, ...]]:
        return await wh.rows("SELECT topic, partition, offset, key, value, reason, detail FROM bus_dead_letters"
                             " ORDER BY topic, partition, offset")

    rows = await dead_lettered()
    assert [(r[0], r[1], r[2]) for r in rows] == sorted(delivered)
    by_origin = {(r[0], r[1], r[2]): r for r in rows}
    for origin, (_topic, value, _headers, reason) in zip(delivered, poison, strict=True):
        _t, _p, _o, key, stored_value, stored_reason, detail = by_origin[origin]
        assert (key, stored_value, stored_reason) == ("BTC/USDT", value.decode(), reason)
        assert detail
    first_counts = await wh.counts()
    await wh.assert_exactly_once(tape.trades, tape.frames)

    # Positions lost (and only they): everything is read again, from the start of every partition.
    await wh.command("TRUNCATE TABLE bus_positions")
    replay = start_member(wh, settings)
    try:
        ends = await wh.wait_written(settings)
    finally:
        await replay.stop()
    assert set(delivered) <= replay.replayed  # the poison was recognized as stored already
    assert replay.origins == {(t, p, o) for (t, p), end in ends.items() for o in range(end)}
    assert await wh.counts() == first_counts
    assert await dead_lettered() == rows
    await wh.assert_exactly_once(tape.trades, tape.frames)
    assert await wh.positions() == ends


def test_a_batch_full_of_poison_is_planned_in_linear_time(warehouse: Client) -> None:
    """A producer writing a schema version this ingester cannot read fills whole batches with poison
    (50,000 messages with the default max_batch_rows): planning one must not compare every reject with
    every message (that took ~100 s a batch)."""
    topic = trades_topic("binance")
    reject = BusReject("BTC/USDT", "[]", "{}", "unknown_schema", "trade.v2 (this ticklake reads trade.v1)")
    messages = [Message(topic, "BTC/USDT", reject, 0, offset, offset < 25_000) for offset in range(50_000)]
    writer = WarehouseWriter(warehouse, LENIENT)
    started = time.perf_counter()
    plan = writer.plan_messages(messages)
    assert time.perf_counter() - started < 10
    assert len(plan.rejects) == 50_000 and plan.positions == {(topic, 0): 50_000}
    writer.commit(plan)
    assert warehouse.query("SELECT count(), uniqExact(offset) FROM bus_dead_letters").result_rows == [(50_000, 50_000)]


# --- 4. a batch cut short ------------------------------------------------------------------------
async def test_a_batch_cut_short_after_bronze_is_completed_by_the_next_ingester(
        bootstrap: str, bus: KafkaProducerBus, wh: Warehouse) -> None:
    settings = kafka_settings(bootstrap, "cut")
    make_topics(settings)
    tape = Tape()
    await publish(bus, tape.round(MARKETS, per_market=15, repeat=3) + tape.round(MARKETS, per_market=15))
    # Small batches: the crash leaves work both partly stored and not read at all.
    doomed = start_member(wh, settings, max_batch=25)
    crashed = crash_after(doomed, "silver_trades", insert_first=False)
    try:
        await asyncio.wait_for(crashed.wait(), TIMEOUT_S)
    finally:
        await doomed.stop()
    assert doomed.task.cancelled()

    # As the crash left it: bronze (and raw, for frames in the batch) holds the batch; silver, gold and
    # the positions do not.
    counts = await wh.counts()
    assert counts["bronze_trades"] > 0
    assert counts["silver_trades"] == counts["gold_rows"] == 0
    assert await wh.positions() == {}
    through = await wh.written_through()
    expected_replays = {(t, p, o) for (t, p), last in through.items() for o in range(last + 1)}

    fresh = start_member(wh, settings)
    try:
        ends = await wh.wait_written(settings)
    finally:
        await fresh.stop()
    assert fresh.replayed == expected_replays
    assert any(topic.endswith(("binance", "kraken")) for topic, _p, _o in expected_replays)  # trades among them
    assert fresh.origins == {(t, p, o) for (t, p), end in ends.items() for o in range(end)}
    await wh.assert_exactly_once(tape.trades, tape.frames)
    assert await wh.positions() == ends


async def test_gold_cut_short_before_the_positions_is_recomputed_after_a_restart(
        bootstrap: str, bus: KafkaProducerBus, wh: Warehouse) -> None:
    settings = kafka_settings(bootstrap, "gold")
    make_topics(settings)
    tape = Tape()
    await publish(bus, tape.round(MARKETS, per_market=40, repeat=5))
    first = start_member(wh, settings)
    try:
        await wh.wait_written(settings)
    finally:
        await first.stop()
    counts = await wh.counts()

    # As if the process died inside the gold view, before the positions were stored: some windows of
    # the batch never counted their trades, and the partitions have no position.
    await wh.command("DELETE FROM gold_ohlcv WHERE exchange = 'kraken'"
                     " OR (symbol = 'BTC/USDT' AND timeframe IN (60, 3600))"
                     " OR (symbol = 'ETH/USDT' AND timeframe = 300 AND toMinute(bucket) < 20)")
    await wh.command("TRUNCATE TABLE bus_positions")
    with pytest.raises(AssertionError):
        await wh.assert_gold(tape.trades)

    restarted = start_member(wh, settings)  # a new process: a new writer, a new consumer
    try:
        ends = await wh.wait_written(settings)
    finally:
        await restarted.stop()
    assert restarted.replayed
    await wh.assert_exactly_once(tape.trades, tape.frames)
    after = await wh.counts()
    assert {k: v for k, v in after.items() if k != "gold_rows"} == {k: v for k, v in counts.items() if k != "gold_rows"}
    assert await wh.positions() == ends


# --- 5. two ingesters in one group, one dies -----------------------------------------------------
@pytest.mark.slow
async def test_two_ingesters_share_partitions_and_one_takes_over_when_the_other_dies(
        bootstrap: str, bus: KafkaProducerBus, wh: Warehouse) -> None:
    settings = kafka_settings(bootstrap, "pair", partitions=4)
    make_topics(settings)
    every_partition = {(topic, p) for topic in topics_for(EXCHANGES) for p in range(settings.partitions)}
    # Symbols whose keys (murmur2, as Java clients hash them) cover all four partitions of each topic.
    markets = [("binance", s) for s in ("BTC/USDT", "TRX/USDT", "SOL/USDT", "ETH/USDT", "XRP/USDT", "ATOM/USDT")]
    markets += [("kraken", s) for s in ("SOL/USD", "BTC/USD", "TRX/USD", "ETH/USD")]
    tape = Tape()

    a = start_member(wh, settings)
    b: Member | None = None
    armed = threading.Event()
    a_crashed = crash_after(a, "bronze_trades", insert_first=True, armed=armed)
    stop_publishing = asyncio.Event()

    async def publisher() -> None:
        while not stop_publishing.is_set():
            await bus.publish(tape.round(markets, per_market=2, repeat=1))
            await asyncio.sleep(0.01)
        assert await bus.flush(10) == 0

    publishing: asyncio.Task[None] | None = None
    try:
        await a.wait_assigned(len(every_partition))
        b = start_member(wh, settings)
        deadline = time.monotonic() + TIMEOUT_S
        while not (a.source.assigned and b.source.assigned and not a.source.assigned & b.source.assigned
                   and a.source.assigned | b.source.assigned == every_partition):
            assert time.monotonic() < deadline, (a.source.assigned, b.source.assigned)
            await asyncio.sleep(0.02)
        a_share, b_share = set(a.source.assigned), set(b.source.assigned)
        assert a_share | b_share == every_partition

        publishing = asyncio.create_task(publisher())
        while a.ingester.status.batches < 5 or b.ingester.status.batches < 5:
            assert time.monotonic() < deadline and not publishing.done()
            await asyncio.sleep(0.02)
        armed.set()  # a dies right after the bronze insert of its next batch with new trades
        await asyncio.wait_for(a_crashed.wait(), TIMEOUT_S)
        await asyncio.gather(a.task, return_exceptions=True)
        assert a.task.cancelled()
        [(cut,)] = await wh.rows("SELECT count() FROM bronze_trades WHERE (exchange, native_symbol, trade_id)"
                                 " NOT IN (SELECT exchange, native_symbol, trade_id FROM silver_trades)")
        assert cut > 0  # bronze is ahead of silver: the batch was cut short
        through, positions = await wh.written_through(), await wh.positions()
        assert any(last >= positions.get(key, 0) for key, last in through.items() if key in a_share)
        await a.leave()  # its consumer leaves the group: b is given every partition

        await b.wait_assigned(len(every_partition))
        taken_over = b.ingester.status.batches
        while b.ingester.status.batches < taken_over + 5:
            assert time.monotonic() < deadline + TIMEOUT_S and not b.task.done()
            await asyncio.sleep(0.02)
        stop_publishing.set()
        await publishing
        ends = await wh.wait_written(settings)
    finally:
        stop_publishing.set()
        if publishing is not None:
            await asyncio.gather(publishing, return_exceptions=True)
        try:
            await a.stop()
        finally:
            if b is not None:
                await b.stop()

    assert b is not None
    assert b.replayed and {(t, p) for t, p, _o in b.replayed} <= a_share  # b completed what a left cut short
    assert set(ends) == every_partition  # every partition carried messages
    await wh.assert_exactly_once(tape.trades, tape.frames)
    assert await wh.positions() == ends
