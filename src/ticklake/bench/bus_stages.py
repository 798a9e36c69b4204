"""Benchmark stages of the distributed mode (the Kafka bus). Like ``stages``, each runs in its own
process and prints one JSON object on its last line; the broker's settings come from the
environment (``broker.KAFKA_ENV``), set by ``broker.py``, which also creates the topics.

    python -m ticklake.bench.bus_stages produce COUNT ROLE_TOPIC,BARE_TOPIC[,ROLE_TOPIC,BARE_TOPIC...]
    python -m ticklake.bench.bus_stages consume COUNT TOPIC ROUNDS
    python -m ticklake.bench.bus_stages e2e-ingest PATH COUNT TRADES_TOPIC RAW_TOPIC   (prints "ready" first)
    python -m ticklake.bench.bus_stages e2e-produce COUNT TRADES_TOPIC RAW_TOPIC
    python -m ticklake.bench.bus_stages e2e-embedded PATH COUNT
    python -m ticklake.bench.bus_stages latency-kafka PATH SECONDS TRADES_PER_SECOND
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ticklake.bench.broker import KAFKA_ENV
from ticklake.bench.stages import latency, peak_rss_mb, synthetic_trades
from ticklake.model import Message, RawFrame, Trade, raw_topic, trades_topic
from ticklake.settings import KafkaSettings, Settings
from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.writer import Plan, WarehouseWriter

TRADES_PER_FRAME = 5  # as synthetic_trades makes them
STAGE_TIMEOUT_S = 600.0


def bench_kafka() -> KafkaSettings:
    """The broker's settings, with a consumer group nobody else uses."""
    kafka = KafkaSettings.model_validate_json(os.environ[KAFKA_ENV])
    return kafka.model_copy(update={"group_id": f"{kafka.group_id}-{uuid.uuid4().hex[:8]}"})


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """KafkaProducerBus's configuration (bus/kafka/producer.py), for the bare producer: keep the two in step."""
    return {
        "bootstrap.servers": kafka.bootstrap_servers, "client.id": kafka.client_id, **kafka.config,
        "enable.idempotence": True, "acks": "all", "compression.type": kafka.compression,
        "linger.ms": kafka.linger_ms, "queue.buffering.max.messages": kafka.max_buffered_messages,
        "message.timeout.ms": 0, "partitioner": "murmur2_random", **kafka.config,
    }


def consumer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """KafkaSource's configuration (bus/kafka/source.py), for the bare consumer: keep the two in step."""
    return {
        "bootstrap.servers": kafka.bootstrap_servers, "client.id": kafka.client_id, **kafka.config,
        "group.id": kafka.group_id, "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(500, kafka.session_timeout_ms // 6), "max.poll.interval.ms": 600_000,
        "partition.assignment.strategy": "range,roundrobin", "fetch.wait.max.ms": 10, **kafka.config,
    }


def frame_messages(frames: list[RawFrame], trades: list[Trade], trades_to: str, raw_to: str) -> list[list[Message]]:
    """What a feed handler publishes for each frame: the raw frame, then its trades."""
    published = []
    for j, frame in enumerate(frames):
        own = trades[j * TRADES_PER_FRAME:(j + 1) * TRADES_PER_FRAME]
        published.append([Message(raw_to, own[0].symbol, frame), *(Message(trades_to, t.symbol, t) for t in own)])
    return published


# --- a. produce ----------------------------------------------------------------------------------
async def _role_produce(kafka: KafkaSettings, trades: list[Trade], topic: str) -> tuple[float, float]:
    from ticklake.bus.kafka import KafkaProducerBus

    # One publish per frame's trades, as the feed handlers call it.
    chunks = [[Message(topic, t.symbol, t) for t in trades[i:i + TRADES_PER_FRAME]]
              for i in range(0, len(trades), TRADES_PER_FRAME)]
    bus = KafkaProducerBus(kafka)
    cpu, started = time.process_time(), time.perf_counter()
    for chunk in chunks:
        await bus.publish(chunk)
    remaining = await bus.flush(STAGE_TIMEOUT_S)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    await bus.close()
    if remaining or bus.delivery_failures:
        raise RuntimeError(f"{remaining} undelivered, {bus.delivery_failures} failed")
    return wall, cpu


def _bare_produce(kafka: KafkaSettings, values: list[bytes], keys: list[bytes], headers: Any,
                  topic: str) -> tuple[float, float]:
    from confluent_kafka import Producer

    producer = Producer(producer_config(kafka))
    produce, poll = producer.produce, producer.poll
    cpu, started = time.process_time(), time.perf_counter()
    for value, key in zip(values, keys, strict=True):
        while True:
            try:
                produce(topic, value, key, headers=headers)
                break
            except BufferError:
                poll(0.005)
    remaining = producer.flush(STAGE_TIMEOUT_S)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if remaining:
        raise RuntimeError(f"{remaining} undelivered")
    return wall, cpu


def produce(count: int, topics: list[str]) -> dict[str, Any]:
    """``count`` trades through KafkaProducerBus (encoding included) against a bare confluent_kafka
    Producer sending the same pre-encoded bytes with the same configuration; rounds alternate."""
    from ticklake.bus.codec import encode

    kafka = bench_kafka()
    _frames, trades = synthetic_trades(count)
    started = time.perf_counter()
    encoded = [encode(t) for t in trades]
    encode_s = time.perf_counter() - started
    values = [value for value, _headers in encoded]
    keys = [t.symbol.encode() for t in trades]
    headers = encoded[0][1]
    role: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    for i in range(0, len(topics), 2):
        role.append(asyncio.run(_role_produce(kafka, trades, topics[i])))
        bare.append(_bare_produce(kafka, values, keys, headers, topics[i + 1]))
    role_rate = statistics.median(count / wall for wall, _cpu in role)
    bare_rate = statistics.median(count / wall for wall, _cpu in bare)
    return {"messages": count, "rounds": len(role), "value_bytes": round(sum(map(len, values)) / count),
            "role_msgs_per_s": round(role_rate), "bare_msgs_per_s": round(bare_rate),
            "ratio": round(role_rate / bare_rate, 3), "encode_msgs_per_s": round(count / encode_s),
            "role_cpu_us_per_msg": round(statistics.median(cpu for _w, cpu in role) / count * 1e6, 2),
            "bare_cpu_us_per_msg": round(statistics.median(cpu for _w, cpu in bare) / count * 1e6, 2),
            "compression": kafka.compression, "linger_ms": kafka.linger_ms, "partitions": kafka.partitions}


# --- b. consume ----------------------------------------------------------------------------------
def _no_positions(keys: list[tuple[str, int]]) -> dict[Any, Any]:
    return {}


async def _role_consume(kafka: KafkaSettings, topic: str, count: int, max_batch: int,
                        max_wait_s: float) -> tuple[float, float]:
    """Messages per second and CPU µs per message, from the first batch on (the group join is not timed)."""
    from ticklake.bus.kafka import KafkaSource

    source = KafkaSource(kafka.model_copy(update={"group_id": f"{kafka.group_id}-{uuid.uuid4().hex[:6]}"}),
                         [topic], _no_positions, max_batch, max_wait_s)
    got = first = 0
    first_at = cpu = 0.0
    batches = source.batches()
    try:
        async for batch in batches:
            if not got:
                first_at, cpu, first = time.perf_counter(), time.process_time(), len(batch)
            got += len(batch)
            if got >= count:
                break
    finally:
        await batches.aclose()  # type: ignore[attr-defined]
    wall, cpu = time.perf_counter() - first_at, time.process_time() - cpu
    await source.close()
    timed = max(1, got - first)
    return timed / wall, cpu / timed * 1e6


def _bare_consume(kafka: KafkaSettings, topic: str, count: int, max_batch: int, max_wait_s: float,
                  keep: list[Any] | None) -> tuple[float, float]:
    from confluent_kafka import Consumer

    consumer = Consumer(consumer_config(kafka.model_copy(
        update={"group_id": f"{kafka.group_id}-{uuid.uuid4().hex[:6]}"})))
    consumer.subscribe([topic])
    got = first = 0
    first_at = cpu = 0.0
    deadline = time.monotonic() + STAGE_TIMEOUT_S
    while got < count and time.monotonic() < deadline:
        messages = consumer.consume(num_messages=max_batch, timeout=max_wait_s)
        read = 0
        for message in messages:
            if message.error() is None:
                read += 1
        if keep is not None:
            keep.extend(messages)
        if read and not got:
            first_at, cpu, first = time.perf_counter(), time.process_time(), read
        got += read
    wall, cpu = time.perf_counter() - first_at, time.process_time() - cpu
    consumer.close()
    if got < count:
        raise RuntimeError(f"the bare consumer read {got} of {count} messages")
    timed = max(1, got - first)
    return timed / wall, cpu / timed * 1e6


def consume(count: int, topic: str, rounds: int) -> dict[str, Any]:
    """The same ``count`` messages read by KafkaSource (decoded into records, in the ingester's
    batches) and by a bare confluent_kafka Consumer that does not decode; rounds alternate, each a
    new consumer group. Also: KafkaSource's decoding alone, over messages already read."""
    from ticklake.bus.kafka import KafkaSource

    kafka = bench_kafka()
    ingest = Settings().ingest
    max_batch, max_wait_s = ingest.max_batch_rows, ingest.flush_interval_ms / 1000
    role: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    kept: list[Any] = []
    for i in range(rounds):
        role.append(asyncio.run(_role_consume(kafka, topic, count, max_batch, max_wait_s)))
        bare.append(_bare_consume(kafka, topic, count, max_batch, max_wait_s, kept if i == 0 else None))
    source = KafkaSource(kafka, [topic], _no_positions, max_batch, max_wait_s)
    raw = [m for m in kept if m.error() is None]
    decode_s = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(raw), max_batch):
            source._decode(raw[i:i + max_batch])
        decode_s.append(time.perf_counter() - started)
    role_rate = statistics.median(rate for rate, _cpu in role)
    bare_rate = statistics.median(rate for rate, _cpu in bare)
    return {"messages": count, "rounds": rounds, "batch": max_batch,
            "role_msgs_per_s": round(role_rate), "bare_msgs_per_s": round(bare_rate),
            "ratio": round(role_rate / bare_rate, 3),
            "decode_msgs_per_s": round(len(raw) / statistics.median(decode_s)),
            "role_cpu_us_per_msg": round(statistics.median(cpu for _r, cpu in role), 2),
            "bare_cpu_us_per_msg": round(statistics.median(cpu for _r, cpu in bare), 2)}


# --- c. end to end -------------------------------------------------------------------------------
class _Timed:
    """Seconds spent in some methods of some objects (the bench's instrumentation, nothing else)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: object, method: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, method)
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started

        setattr(owner, method, timed)

    def rounded(self) -> dict[str, float]:
        return {label: round(s, 3) for label, s in self.seconds.items()}


def _open_warehouse(executor: ThreadPoolExecutor, path: str) -> Any:
    def opened() -> Any:
        client = open_client(f"chdb://{path}", "bench")
        migrate.upgrade(client)
        return client

    return executor.submit(opened).result()


def _timed_writer(executor: ThreadPoolExecutor, path: str, settings: Settings) -> tuple[Any, WarehouseWriter, _Timed]:
    """A fresh warehouse at ``path`` and a writer whose planning and inserts are timed."""
    client = _open_warehouse(executor, path)
    writer = WarehouseWriter(client, settings.validation)
    timed = _Timed()
    timed.wrap(writer, "plan_messages", "plan")
    timed.wrap(writer, "commit", "insert")
    return client, writer, timed


class _Counter:
    """Counts trades stored (silver or dead letters) by ``on_batch``; ``done`` once ``count`` are."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.stored = 0
        self.dead = 0
        self.done_at = 0.0
        self.done = asyncio.Event()

    def on_batch(self, plan: Plan) -> None:
        self.stored += len(plan.silver) + len(plan.dead)
        self.dead += len(plan.dead)
        if self.stored >= self.count and not self.done.is_set():
            self.done_at = time.time()
            self.done.set()


def e2e_ingest(path: str, count: int, trades_to: str, raw_to: str) -> dict[str, Any]:
    """The ingest role's side: KafkaSource + Ingester (settings.ingest as configured) into a fresh
    chdb path. Prints "ready" once it holds every partition, then waits for ``count`` trades."""
    from ticklake.bus.kafka import KafkaSource
    from ticklake.warehouse.ingest import Ingester

    kafka = bench_kafka()
    settings = Settings()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse")
    client, writer, timed = _timed_writer(executor, path, settings)
    ingester: Ingester | None = None

    def positions(keys: list[tuple[str, int]]) -> dict[Any, Any]:
        assert ingester is not None
        return ingester.load_positions(keys)

    source = KafkaSource(kafka, [raw_to, trades_to], positions, settings.ingest.max_batch_rows,
                         settings.ingest.flush_interval_ms / 1000)
    timed.wrap(source, "_decode", "decode")
    # Each read (waiting for messages, then decoding them) as wall-clock spans: the parent leaves out
    # what the first one spent waiting for the producer process to start.
    read_spans: list[tuple[float, float]] = []
    next_batch = source._next_batch

    def spanned() -> list[Message]:
        started = time.time()
        try:
            return next_batch()
        finally:
            read_spans.append((started, time.time()))

    source._next_batch = spanned  # type: ignore[method-assign]
    counter = _Counter(count)
    ingester = Ingester(source, writer, settings.ingest, [], executor=executor, on_batch=counter.on_batch)

    async def run() -> tuple[bool, float]:
        assert ingester is not None
        task = asyncio.create_task(ingester.run())
        deadline = time.monotonic() + 60
        while len(source.assigned) < 2 * kafka.partitions:
            if time.monotonic() > deadline or task.done():
                raise RuntimeError(f"the consumer holds {len(source.assigned)} partitions after 60 s")
            await asyncio.sleep(0.01)
        timed.seconds.clear()
        read_spans.clear()
        print("ready", flush=True)
        cpu = time.process_time()
        with contextlib.suppress(TimeoutError):  # reported as incomplete
            await asyncio.wait_for(counter.done.wait(), STAGE_TIMEOUT_S)
        cpu = time.process_time() - cpu
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.close()
        return counter.done.is_set(), cpu

    complete, cpu = asyncio.run(run())
    executor.shutdown(wait=True)
    client.close()
    return {"complete": complete, "done_at": counter.done_at, "trades": counter.stored, "dead": counter.dead,
            "batches": ingester.status.batches, "seconds_in": timed.rounded(), "read_spans": read_spans,
            "cpu_s": round(cpu, 2),
            "cpu_us_per_trade": round(cpu / max(1, counter.stored) * 1e6, 2), "peak_rss_mb": round(peak_rss_mb())}


def e2e_produce(count: int, trades_to: str, raw_to: str) -> dict[str, Any]:
    """The feed role's side: every frame's messages (the raw frame, its trades) through
    KafkaProducerBus as fast as it takes them."""
    from ticklake.bus.kafka import KafkaProducerBus

    kafka = bench_kafka()
    frames, trades = synthetic_trades(count)
    published = frame_messages(frames, trades, trades_to, raw_to)

    async def run() -> dict[str, Any]:
        bus = KafkaProducerBus(kafka)
        # The feed role's producer connects (metadata, idempotent producer id) while the feeds connect
        # to the venues: not timed here either (cold, the first messages arrive ~1 s later).
        await asyncio.get_running_loop().run_in_executor(None, bus._producer.list_topics, None, 30)
        await asyncio.sleep(1.0)
        first_publish_at = time.time()
        cpu, started = time.process_time(), time.perf_counter()
        for messages in published:
            await bus.publish(messages)
        publish_s = time.perf_counter() - started
        remaining = await bus.flush(STAGE_TIMEOUT_S)
        flushed_s, cpu = time.perf_counter() - started, time.process_time() - cpu
        await bus.close()
        if remaining:
            raise RuntimeError(f"{remaining} messages undelivered")
        sent = len(frames) + len(trades)
        return {"first_publish_at": first_publish_at, "frames": len(frames), "messages": sent,
                "publish_s": round(publish_s, 2), "flushed_s": round(flushed_s, 2),
                "msgs_per_s": round(sent / flushed_s), "cpu_s": round(cpu, 2)}

    return asyncio.run(run())


def e2e_embedded(path: str, count: int) -> dict[str, Any]:
    """The same frames and trades through the embedded bus (``ticklake up``): publisher and ingester
    in one process; first publish -> last trade in silver."""
    from ticklake.bus import MemoryBus, topics_for
    from ticklake.warehouse.ingest import Ingester

    settings = Settings()
    frames, trades = synthetic_trades(count)
    published = frame_messages(frames, trades, trades_topic("binance"), raw_topic("binance"))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse")
    client, writer, timed = _timed_writer(executor, path, settings)
    counter = _Counter(count)
    bus = MemoryBus(settings.ingest.bus_queue_size)
    source = bus.source(topics_for(["binance"]), settings.ingest.max_batch_rows,
                        settings.ingest.flush_interval_ms / 1000)
    ingester = Ingester(source, writer, settings.ingest, ["binance"], executor=executor, on_batch=counter.on_batch)

    async def run() -> tuple[float, float]:
        task = asyncio.create_task(ingester.run())
        first_publish_at = time.time()
        cpu = time.process_time()
        for messages in published:
            await bus.publish(messages)
        await asyncio.wait_for(counter.done.wait(), STAGE_TIMEOUT_S)
        cpu = time.process_time() - cpu
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return counter.done_at - first_publish_at, cpu

    seconds, cpu = asyncio.run(run())
    executor.shutdown(wait=True)
    client.close()
    return {"trades": counter.stored, "frames": len(frames), "seconds": round(seconds, 2),
            "trades_per_s": round(counter.stored / seconds), "batches": ingester.status.batches,
            "seconds_in": timed.rounded(), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak_rss_mb())}


if __name__ == "__main__":
    stage, args = sys.argv[1], sys.argv[2:]
    result: Any
    if stage == "produce":
        result = produce(int(args[0]), args[1].split(","))
    elif stage == "consume":
        result = consume(int(args[0]), args[1], int(args[2]))
    elif stage == "e2e-ingest":
        result = e2e_ingest(args[0], int(args[1]), args[2], args[3])
    elif stage == "e2e-produce":
        result = e2e_produce(int(args[0]), args[1], args[2])
    elif stage == "e2e-embedded":
        result = e2e_embedded(args[0], int(args[1]))
    elif stage == "latency-kafka":
        result = latency(args[0], float(args[1]), float(args[2]), kafka=bench_kafka())
    else:
        raise SystemExit(f"unknown stage {stage}")
    print(json.dumps(result))
