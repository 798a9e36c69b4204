"""A TCP proxy on loopback that the drill controls: between the feed and a venue, or between the
offloader and the Iceberg catalog.

* ``partition()`` black-holes every connection, open or new, until ``heal()``: nothing is forwarded
  either way and nothing is closed, as when a network drops packets. A client can only notice the
  silence (the feed's watchdog must); a new connection is accepted but reaches nothing (its
  handshake times out), as a SYN into a black hole does. On ``heal()`` forwarding resumes: what was
  held is delivered, and connections either side gave up on close.
* ``on_request(pattern, hook)`` watches client-to-server bytes for a request line matching
  ``pattern`` (e.g. an Iceberg commit); the server's answer to it is held back, ``hook()`` is called
  (the drill kills the client there: the server did the work, the client never learns of it) and
  the answer is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

_CHUNK = 65536


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` (``host:port``). An async context manager."""

    def __init__(self, upstream_host: str, upstream_port: int, name: str = "") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name or f"{upstream_host}:{upstream_port}"
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: tuple[re.Pattern[bytes], Callable[[], None]] | None = None
        self.connections = 0  # accepted so far

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self._open.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> Proxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, upstream_url: str) -> str:
        """``upstream_url`` (``ws://host:port/path``...) with this proxy's address instead."""
        parts = urlsplit(upstream_url)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.port}"))

    @property
    def partitioned(self) -> bool:
        return not self._open.is_set()

    def partition(self) -> None:
        log.info("proxy %s: partitioned (nothing forwarded, nothing closed)", self.name)
        self._open.clear()

    def heal(self) -> None:
        log.info("proxy %s: healed", self.name)
        self._open.set()

    def on_request(self, pattern: bytes, hook: Callable[[], None]) -> None:
        """Once: hold back the answer to the next request matching ``pattern``, call ``hook``."""
        self._watch = (re.compile(pattern), hook)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()  # a new connection during a partition reaches nothing
            if reader.at_eof():
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(upstream_writer)
            watched = asyncio.Event()  # set: the next answer is held back and the hook called
            up = asyncio.create_task(self._pump(reader, upstream_writer, watched, upstream=True))
            down = asyncio.create_task(self._pump(upstream_reader, writer, watched, upstream=False))
            _done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            # One side closed: let the other finish delivering what it holds, briefly, then close.
            if pending:
                await asyncio.wait(pending, timeout=2)
            for other in pending:
                other.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watched: asyncio.Event,
                    upstream: bool) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                await self._open.wait()  # partitioned: held here, and nothing more is read
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                if upstream and self._watch is not None and self._watch[0].search(data):
                    watched.set()
                elif not upstream and watched.is_set() and self._watch is not None:
                    hook = self._watch[1]
                    self._watch = None
                    log.info("proxy %s: the answer to a watched request is held back", self.name)
                    hook()
                    return  # the answer is dropped
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return
