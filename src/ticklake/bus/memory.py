"""The embedded bus: asyncio queues inside the one ticklake process.

Every subscriber gets its own bounded queue; a publisher waits while any subscriber's queue is
full, so a slow warehouse slows the feed handlers down instead of growing memory without bound.
Messages are passed as objects: nothing is serialized in the embedded mode.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from ticklake.bus.base import Message


class _Subscription:
    def __init__(self, topics: Sequence[str], maxsize: int) -> None:
        self.topics = frozenset(topics)
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)


class MemoryBus:
    def __init__(self, maxsize: int = 10_000) -> None:
        self._maxsize = maxsize
        self._subscriptions: list[_Subscription] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        for message in messages:
            for subscription in self._subscriptions:
                if message.topic in subscription.topics:
                    await subscription.queue.put(message)

    def depth(self) -> int:
        return max((s.queue.qsize() for s in self._subscriptions), default=0)

    def subscribe(self, topics: Sequence[str], max_batch: int, max_wait_s: float) -> AsyncIterator[list[Message]]:
        # Register now, not at the first iteration, so nothing published in between is missed.
        subscription = _Subscription(topics, self._maxsize)
        self._subscriptions.append(subscription)
        return self._batches(subscription, max_batch, max_wait_s)

    async def _batches(
        self, subscription: _Subscription, max_batch: int, max_wait_s: float
    ) -> AsyncIterator[list[Message]]:
        queue = subscription.queue
        try:
            while True:
                batch = [await queue.get()]
                # A backlog has already waited (the subscriber was busy): hand it over at once.
                # Only a batch that starts on an idle queue waits up to max_wait_s for company.
                backlog = not queue.empty()
                deadline = time.monotonic() + max_wait_s
                while len(batch) < max_batch:
                    while not queue.empty() and len(batch) < max_batch:
                        batch.append(queue.get_nowait())
                    remaining = deadline - time.monotonic()
                    if backlog or len(batch) >= max_batch or remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except TimeoutError:
                        break
                yield batch
        finally:
            self._subscriptions.remove(subscription)
