"""The ingester: batches from the bus, written through every layer.

A batch is written once its oldest message has waited ``flush_interval_ms`` or ``max_batch_rows``
messages are waiting, whichever comes first: every insert costs about the same through the view chain
whatever its size, so the interval sets the cost at low load, while a busy bus just gives bigger
batches at the same pace (and a writer that fell behind gets its backlog at once). Writes run on one dedicated
thread (chdb sessions must not be shared across threads carelessly: stack.md). A batch that keeps
failing is retried with backoff, forever on the embedded bus (a Kafka member gives it up in time and
reads it again: ``BatchSource.give_up_after_s``); meanwhile the bus fills and slows the feed handlers
down, so nothing is dropped. Both buses hand batches over through one interface (``BatchSource``,
bus/base.py), so the ingester has one code path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from ticklake.bus import Message
from ticklake.bus.base import BatchSource, PartitionKey, Position
from ticklake.model import RawFrame
from ticklake.ops import metrics
from ticklake.settings import IngestSettings
from ticklake.warehouse.positions import read_positions
from ticklake.warehouse.validation import RULES
from ticklake.warehouse.writer import Plan, WarehouseWriter

log = logging.getLogger(__name__)

T = TypeVar("T")

# Observing every trade's latency would cost more than the insert at high rates: sample.
_LATENCY_SAMPLES_PER_BATCH = 64


@dataclass
class IngestStatus:
    batches: int = 0
    trades: int = 0
    frames: int = 0
    last_flush_at: float | None = None
    last_error: str = ""
    failing_since: float | None = None

    def health(self) -> dict[str, object]:
        status = "ok" if self.failing_since is None else "down"
        return {"status": status, "batches": self.batches, "trades": self.trades, "frames": self.frames,
                "last_flush_at": self.last_flush_at, "last_error": self.last_error}


class BatchAbandonedError(Exception):
    """A batch could not be written in time; its partitions are read again from the warehouse's positions."""


class Ingester:
    """Writes what a ``BatchSource`` delivers: the embedded bus's subscription, or a Kafka consumer
    group, whose positions live in the warehouse (``load_positions``)."""

    def __init__(self, source: BatchSource, writer: WarehouseWriter, settings: IngestSettings,
                 exchanges: Sequence[str], executor: ThreadPoolExecutor | None = None,
                 on_batch: Callable[[Plan], None] | None = None) -> None:
        self.source = source
        self.writer = writer
        self.settings = settings
        for exchange in exchanges:  # the venues' counts at zero from the start: a dashboard line, not "no data"
            metrics.INGEST_DUPLICATES.labels(exchange)
            for rule in RULES:
                metrics.DEAD_LETTERS.labels(exchange, rule)
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="warehouse")
        self.on_batch = on_batch
        self.status = IngestStatus()
        self.busy = False  # a batch is being planned or committed
        self._batches = source.batches()

    def depth(self) -> int:
        return self.source.depth()

    async def run(self) -> None:
        source = self.source
        while True:
            try:
                async for messages in self._batches:
                    source.writing()
                    stored = False
                    try:
                        await self.write(messages)
                        stored = True
                    finally:
                        source.written(messages if stored else ())
                return
            except BatchAbandonedError:
                log.error("a batch could not be written for %.0f s: leaving the group to read it again later",
                          source.give_up_after_s or 0)
                # Reload the newest stored ids too: part of the batch may be in bronze.
                await self._on_warehouse(self.writer.forget_state)
                await source.restart()
                self._batches = source.batches()

    async def _on_warehouse(self, step: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, step)

    def load_positions(self, keys: list[PartitionKey]) -> dict[PartitionKey, Position]:
        """For the Kafka consumer's assignments (called on its thread): where the warehouse stands.
        Runs on the warehouse thread, and forgets the cached newest ids: another member may have
        written these partitions' markets since."""
        def load() -> dict[PartitionKey, Position]:
            self.writer.forget_state()
            return read_positions(self.writer.client, keys)

        return self.executor.submit(load).result()

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until everything published so far is written (or ``timeout_s`` passed). Call it once
        the publishers stopped, before cancelling ``run``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self.depth() > 0 or self.busy) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        # The last batch may still wait out its flush interval, then be written: wait for both.
        await asyncio.sleep(self.settings.flush_interval_ms / 1000 + 0.05)
        while self.busy and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def write(self, messages: Sequence[Message]) -> Plan:
        self.busy = True
        try:
            return await self._write(messages)
        finally:
            self.busy = False

    async def _write(self, messages: Sequence[Message]) -> Plan:
        frames = sum(1 for m in messages if isinstance(m.value, RawFrame))
        trades = len(messages) - frames
        started = time.monotonic()
        plan = await self._retrying(lambda: self.writer.plan_messages(messages), trades, started)
        # The same plan is committed until it succeeds: its insert tokens make a retried insert a no-op
        # where the first attempt landed. (Planning again would count trades that reached bronze
        # but not silver as duplicates, and silver would never get them.)
        await self._retrying(lambda: self.writer.commit(plan), trades, started)
        now = time.time()
        self._observe(plan, now)
        self.status.batches += 1
        self.status.trades += len(plan.silver)
        self.status.frames += frames
        self.status.last_flush_at = now
        self.status.failing_since = None
        metrics.INGEST_LAST_FLUSH.set(now)
        metrics.BUS_DEPTH.set(self.depth())
        if self.on_batch is not None:
            self.on_batch(plan)
        return plan

    async def _retrying(self, step: Callable[[], T], trades: int, started: float) -> T:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                return await loop.run_in_executor(self.executor, step)
            except Exception as exc:
                give_up_after_s = self.source.give_up_after_s
                if give_up_after_s is not None and time.monotonic() - started > give_up_after_s:
                    raise BatchAbandonedError from exc
                attempt += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"[:500]
                self.status.failing_since = self.status.failing_since or time.time()
                delay = min(30.0, 0.5 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0)
                log.error("cannot write a batch of %d trades (attempt %d): %s; retrying in %.1f s",
                          trades, attempt, self.status.last_error, delay)
                await asyncio.sleep(delay)

    @staticmethod
    def _observe(plan: Plan, now: float) -> None:
        if not plan.silver:
            return
        step = max(1, len(plan.silver) // _LATENCY_SAMPLES_PER_BATCH)
        now_us = now * 1_000_000
        for trade in plan.silver[::step]:
            metrics.TRADE_TO_CANDLE.observe(max(0.0, (now_us - trade.received_us) / 1_000_000))
