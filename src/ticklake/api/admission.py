"""Admission of warehouse reads: a few at a time, the rest answered 503 rather than queued forever.

The platform's first duty is to store trades; a crowd of readers must not slow that down (issue 10:
32 heavy readers pushed trade-to-candle p99 from 0.25 s to 10 s). So a request that reads the warehouse
first takes one of ``api.max_concurrent_reads`` slots, each a reading connection of its own
(warehouse/pool.py), waiting at most ``api.read_wait_ms`` on the event loop (no thread is held while
waiting); without a slot it is answered 503 with ``Retry-After``. After a read that others queued
behind, its slot rests in proportion (``api.read_duty_cycle``), so that readers, however many, take at
most that share of a core per slot: on a small machine a slot reading back to back slowed the writer
beside it by a third. A
query stopped by its per-query limit (time, memory) is answered 503 too, saying which limit and what to
change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import anyio
from starlette.concurrency import run_in_threadpool

from ticklake.api.responses import ApiError
from ticklake.ops.metrics import API_READS_REFUSED
from ticklake.settings import ApiSettings
from ticklake.warehouse.pool import QueryLimitError

T = TypeVar("T")

_LIMIT_HINTS = {
    "time": "it ran longer than api.query_timeout_s allows",
    "memory": "it needed more memory than api.query_max_memory_bytes allows",
    "rows": "it read more rows than a request may",
}


class ReadAdmission:
    def __init__(self, slots: int, wait_s: float, retry_after_s: int, duty_cycle: float = 1.0) -> None:
        self.slots = slots
        self.rest_per_read_s = 1 / duty_cycle - 1  # seconds of rest per second of reading
        self.wait_s = wait_s
        self.retry_after = {"Retry-After": str(retry_after_s)}
        self._semaphore = anyio.Semaphore(slots)
        self.kind = "warehouse read"  # what a slot is, as a 503 names it
        for reason in ("saturated", *_LIMIT_HINTS):  # at zero from the start: a dashboard line, not "no data"
            API_READS_REFUSED.labels(reason)

    @classmethod
    def from_settings(cls, api: ApiSettings) -> ReadAdmission:
        return cls(api.max_concurrent_reads, api.read_wait_ms / 1000, api.retry_after_s, api.read_duty_cycle)

    @classmethod
    def for_exports(cls, api: ApiSettings) -> ReadAdmission:
        """File exports (api/export.py): ``api.max_concurrent_exports`` slots of their own, so that an
        export of minutes never holds one of the read slots (other readers would get 503 meanwhile)."""
        exports = cls(api.max_concurrent_exports, api.read_wait_ms / 1000, api.retry_after_s)
        exports.kind = "export"
        return exports

    async def run(self, read: Callable[[], T]) -> T:
        """``read()`` on the thread pool once a slot is free (503 when none frees in time)."""
        await self.acquire()
        started = time.monotonic()
        try:
            return await self.run_held(read)
        finally:
            if self.rest_per_read_s and self._semaphore.statistics().tasks_waiting:
                # Others queue for the slot: it rests while this answer is on its way, so that readers,
                # however many, take at most their duty cycle of a core per slot. (A lone client paging
                # through trades never waits for a rest.)
                asyncio.get_running_loop().call_later((time.monotonic() - started) * self.rest_per_read_s,
                                                      self._semaphore.release)
            else:
                self._semaphore.release()

    async def acquire(self) -> None:
        """Take a slot, waiting at most ``wait_s`` on the event loop; 503 when none frees in time.
        Whoever acquires calls ``release`` (``run`` does both)."""
        try:
            self._semaphore.acquire_nowait()
        except anyio.WouldBlock:
            with anyio.move_on_after(self.wait_s) as waiting:
                await self._semaphore.acquire()
            if waiting.cancelled_caught:
                self._refuse()

    def release(self) -> None:
        self._semaphore.release()

    async def run_held(self, read: Callable[[], T]) -> T:
        """``read()`` on the thread pool, under a slot already held; a query stopped by its per-query
        limit is answered 503 naming the limit."""
        try:
            return await run_in_threadpool(read)
        except QueryLimitError as exc:
            API_READS_REFUSED.labels(exc.limit).inc()
            raise ApiError(503, f"the query was stopped: {_LIMIT_HINTS.get(exc.limit, exc.limit)}; ask for a "
                                "shorter range or fewer rows, or retry later", headers=self.retry_after) from None

    def _refuse(self) -> None:
        API_READS_REFUSED.labels("saturated").inc()
        raise ApiError(503, f"the API is busy: every {self.kind} slot is taken; retry after the time in "
                            "Retry-After", headers=self.retry_after)
