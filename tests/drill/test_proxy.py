"""The drill's TCP proxy: a partition holds every byte without closing anything, a heal delivers
them; a watched request's answer is held back and the hook called."""

from __future__ import annotations

import asyncio
import contextlib

from ticklake.drill.proxy import Proxy


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_partition_holds_bytes_without_closing_and_a_heal_delivers_them() -> None:
    server, port = await _echo_server()
    async with server, Proxy("127.0.0.1", port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"before")
        assert await asyncio.wait_for(reader.readexactly(6), 5) == b"before"
        proxy.partition()
        writer.write(b"during")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)
            raise AssertionError("a byte went through the partition")
        assert not reader.at_eof()  # nothing closed
        # A new connection during the partition is accepted and reaches nothing.
        late_reader, late_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        late_writer.write(b"late")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(late_reader.read(1), 0.3)
            raise AssertionError("a new connection went through the partition")
        proxy.heal()
        assert await asyncio.wait_for(reader.readexactly(6), 5) == b"during"
        assert await asyncio.wait_for(late_reader.readexactly(4), 5) == b"late"
        for w in (writer, late_writer):
            w.close()


async def test_the_answer_to_a_watched_request_is_held_back_and_the_hook_called() -> None:
    server, port = await _echo_server()
    called: list[bool] = []
    async with server, Proxy("127.0.0.1", port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.on_request(rb"POST /v1/\S*/tables/silver_trades HTTP", lambda: called.append(True))
        writer.write(b"GET /v1/x/tables/silver_trades HTTP/1.1\r\n\r\n")
        assert (await asyncio.wait_for(reader.readexactly(10), 5)).startswith(b"GET")  # not watched: answered
        await asyncio.wait_for(reader.read(100), 5)
        writer.write(b"POST /v1/lake/namespaces/t/tables/silver_trades HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.read(100), 5) == b""  # the answer dropped, the connection closed
        assert called == [True]
        writer.close()
