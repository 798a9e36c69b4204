"""The embedded bus: asyncio queues inside the one ticklake process.

Every subscriber gets its own bounded queue; a publisher waits while any subscriber's queue is
full, so a slow warehouse slows the feed handlers down instead of growing memory without bound.
Messages are passed as objects: nothing is serialized in the embedded mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from ticklake.bus.base import Message


class Subscription:
    """One subscriber's queue on the embedded bus, and the ingester's ``BatchSource`` when it is the
    ingester's: nothing is committed anywhere (the process that publishes is the one that stores; a
    crash is repaired from the warehouse at the next start) and no batch is given up."""

    give_up_after_s: float | None = None

    def __init__(self, bus: MemoryBus, topics: Sequence[str], maxsize: int, max_batch: int,
                 max_wait_s: float) -> None:
        self.topics = frozenset(topics)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._bus = bus
        # Each message with the monotonic time it was published: a batch is due when its oldest is.
        self.queue: asyncio.Queue[tuple[float, Message]] = asyncio.Queue(maxsize)
        self.full = asyncio.Event()  # a whole batch is waiting: no reason to wait for the deadline

    def depth(self) -> int:
        """Messages published to this subscriber and not yet taken."""
        return self.queue.qsize()

    def writing(self) -> None:
        pass  # no other member to keep a partition from while the write runs

    def written(self, messages: Sequence[Message]) -> None:
        pass  # no position to commit: a crash is repaired from the warehouse at the next start

    async def restart(self) -> None:
        pass  # never asked for: no batch is given up (give_up_after_s is None)

    async def batches(self) -> AsyncIterator[list[Message]]:
        """Batches of at most ``max_batch`` messages, each handed over once its oldest message has
        waited ``max_wait_s`` (or at once, when ``max_batch`` are waiting).

        Counting from the oldest message, not from when the subscriber asked, is what adapts the
        batches to the load: a quiet bus costs nothing, a busy one gives bigger batches at the same
        pace, and a subscriber that fell behind gets its backlog at once, in batches as big as it
        needs. (Handing a backlog over at once whatever its age made a busy writer write back to back,
        each small insert costing as much as a big one: stack.md, "The cost of small inserts".)"""
        queue, max_batch, max_wait_s = self.queue, self.max_batch, self.max_wait_s
        try:
            while True:
                published_at, message = await queue.get()
                batch = [message]
                remaining = published_at + max_wait_s - time.monotonic()
                if remaining > 0 and queue.qsize() + 1 < max_batch:
                    self.full.clear()
                    if queue.qsize() + 1 < max_batch:  # (not filled up between the check and the clear)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.full.wait(), remaining)
                while len(batch) < max_batch and not queue.empty():
                    batch.append(queue.get_nowait()[1])
                yield batch
        finally:
            self._bus.unsubscribe(self)


class MemoryBus:
    def __init__(self, maxsize: int = 10_000) -> None:
        self._maxsize = maxsize
        self._subscriptions: list[Subscription] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        now = time.monotonic()
        for message in messages:
            for subscription in self._subscriptions:
                if message.topic in subscription.topics:
                    queue = subscription.queue
                    await queue.put((now, message))
                    if queue.qsize() >= subscription.max_batch:
                        subscription.full.set()

    def depth(self) -> int:
        return max((s.depth() for s in self._subscriptions), default=0)

    def source(self, topics: Sequence[str], max_batch: int, max_wait_s: float) -> Subscription:
        """A subscription to ``topics`` (the ingester's ``BatchSource``): see ``Subscription.batches``.
        It is registered at once, not at the first iteration, so nothing published in between is missed."""
        subscription = Subscription(self, topics, self._maxsize, max_batch, max_wait_s)
        self._subscriptions.append(subscription)
        return subscription

    def subscribe(self, topics: Sequence[str], max_batch: int, max_wait_s: float) -> AsyncIterator[list[Message]]:
        """Just the batches of a new subscription (``source``), for a subscriber that only reads."""
        return self.source(topics, max_batch, max_wait_s).batches()

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)
