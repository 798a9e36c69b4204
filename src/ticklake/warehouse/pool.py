"""Connections for reading, apart from the writer's, so that reads never queue behind writes.

A clickhouse-connect client runs one call at a time (on chdb, behind the handle's lock): an API
sharing the ingester's client waited for every insert, and the ingester for every read (issue 10:
`/v1/ohlcv` p50 94 ms while ingesting, 20 ms quiet). chdb serves any number of handles to its one
engine in a process, and they run side by side; a ClickHouse server serves any number of clients.

Each reading connection carries limits, so that what one request can cost is bounded: one thread,
a time limit and a memory limit per query. A query over a limit raises ``QueryLimitError`` naming it.
The threads that read are also made nicer than the rest of the process (``os.setpriority`` on the
thread): on a busy machine the feeds and the writer get the CPU first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.query import QueryResult

log = logging.getLogger(__name__)

# ClickHouse error codes for a query stopped by a limit of its own, and the limit each names.
_LIMIT_ERRORS = {159: "time", 160: "time", 241: "memory", 158: "rows", 396: "rows"}


class QueryLimitError(Exception):
    """A read was stopped by its per-query limit (``limit``: "time", "memory" or "rows")."""

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(detail)
        self.limit = limit


def read_limits(timeout_s: float, max_memory_bytes: int, nice: int = 0) -> dict[str, Any]:
    """The session settings of a reading connection (``nice``: of the threads ClickHouse runs it on)."""
    return {"max_threads": 1, "max_execution_time": timeout_s, "max_memory_usage": max_memory_bytes,
            "os_thread_priority": nice, "readonly": 2}  # 2: reads, and settings of their own; never a write


@contextlib.contextmanager
def _limits() -> Iterator[None]:
    """A ClickHouse error for a query's own limit, raised as ``QueryLimitError``."""
    try:
        yield
    except DatabaseError as exc:
        limit = _LIMIT_ERRORS.get(getattr(exc, "code", None) or 0)
        if limit is None:
            raise
        raise QueryLimitError(limit, str(exc).splitlines()[0][:300]) from exc


class ClientPool:
    """Several connections to one warehouse used as one client for reading: each ``query`` takes a
    free connection (waiting for one if all are busy) and gives it back. Callers bound how many
    queries run at once (the API admits that many requests); the pool only hands connections out."""

    def __init__(self, clients: Sequence[Client], nice: int = 0) -> None:
        if not clients:
            raise ValueError("a pool needs at least one client")
        self._clients = list(clients)
        self._free: queue.SimpleQueue[Client] = queue.SimpleQueue()
        for client in self._clients:
            self._free.put(client)
        self._nice = nice
        self._niced = threading.local()

    @classmethod
    def open(cls, size: int, opener: Callable[[], Client], nice: int = 0) -> ClientPool:
        return cls([opener() for _ in range(size)], nice)

    def __len__(self) -> int:
        return len(self._clients)

    @contextlib.contextmanager
    def _client(self) -> Iterator[Client]:
        self._lower_priority()
        client = self._free.get()
        try:
            yield client
        finally:
            self._free.put(client)

    def query(self, sql: str, parameters: dict[str, Any] | None = None, **kwargs: Any) -> QueryResult:
        with self._client() as client, _limits():
            return client.query(sql, parameters=parameters, **kwargs)

    def raw_query(self, sql: str, parameters: dict[str, Any] | None = None, **kwargs: Any) -> bytes:
        with self._client() as client, _limits():
            return client.raw_query(sql, parameters=parameters, **kwargs)

    def _lower_priority(self) -> None:
        if self._nice <= 0 or getattr(self._niced, "done", False):
            return
        self._niced.done = True
        try:  # Linux: a thread id names one thread; niceness only ever goes up without privileges
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            if current < self._nice:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        except (OSError, AttributeError):
            log.debug("cannot lower the priority of a reading thread", exc_info=True)

    def close(self) -> None:
        for client in self._clients:
            client.close()
