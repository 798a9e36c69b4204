"""Bench stage 10: the live stream (issue 11).

- **Latency**: ``ticklake up`` at 500 trades/s in a process of its own (as stage 9 runs it); clients
  in the bench process subscribe to one market's trades and one-minute candles. For each trade: from
  its receipt by the feed to the delivery of the first candle update that counts it (provisional ones
  included), and to the first one read back from the warehouse after the write. With 1 client, then
  with 100 (every tenth sampled).
- **Fan-out**: a process that runs only the stream (a hub fed as fast as it can take committed
  batches of one trade, no warehouse) to 100 clients in another process, on one core: messages/s
  delivered, next to the same process sending the same bytes to the same 100 sockets directly.

    python -m ticklake.bench.stream_stages fanout PORT SECONDS MODE   (used by run_stream_stages)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ticklake.bench.platform_stages import _quantile
from ticklake.drill.services import free_port

MARKET = {"exchange": "binance", "symbol": "BTC/USDT"}


def _micros(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- latency ---------------------------------------------------------------------------------------
async def _follow(url: str, clients: int, seconds: float) -> dict[str, Any]:
    """Clients following the market; for the sampled ones, each trade's latency to the first candle
    update that counts it (a bucket's first n stored trades in (time, id) order, read from /v1/trades
    afterwards, are those an update of n trades counts), and to the first read back after the write.
    Trades received before the client subscribed are left out (no update can be later than them)."""
    from websockets.asyncio.client import connect

    received = [0]
    sampled: list[tuple[list[float], list[tuple[str, int, float, bool]]]] = []

    async def one(sample: bool) -> None:
        subscribed_at: list[float] = []
        updates: list[tuple[str, int, float, bool]] = []  # bucket, trades counted, delivered, provisional
        if sample:
            sampled.append((subscribed_at, updates))
        async with connect(url, max_size=None) as ws:
            subscribed_at.append(time.time())
            await ws.send(json.dumps({"op": "subscribe", "channel": "trades", **MARKET}))
            await ws.send(json.dumps({"op": "subscribe", "channel": "candles", "timeframe": "1m", **MARKET}))
            deadline = time.monotonic() + seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    text = await asyncio.wait_for(ws.recv(), left)
                except TimeoutError:
                    return
                delivered = time.time()
                received[0] += 1
                message = orjson.loads(text)
                if message["type"] == "candle" and sample and not message.get("catch_up"):
                    candle = message["candle"]
                    updates.append((candle["time"], candle["trades"], delivered, bool(message.get("provisional"))))

    await asyncio.gather(*(one(i % 10 == 0) for i in range(clients)))
    buckets = {bucket for _trades, updates in sampled for bucket, *_rest in updates}
    stored = await asyncio.to_thread(_stored_trades, url.replace("ws://", "http://").removesuffix("/v1/stream"),
                                     min(buckets)) if buckets else {}
    every, confirmed = [], []
    for subscribed_at, updates in sampled:
        for bucket in {u[0] for u in updates}:
            members = stored.get(bucket, [])
            mine = sorted((delivered, count, provisional)
                          for b, count, delivered, provisional in updates if b == bucket)
            # Each trade of the bucket: the first update that counts it, and the first read back after the
            # write that does (a bucket's k-th trade in (time, id) order is counted once count >= k).
            for k, (_time, _id, received_s) in enumerate(members, 1):
                if received_s < subscribed_at[0] + 1.0:  # received before (or as) the client subscribed
                    continue
                first = next((d for d, c, _p in mine if c >= k), None)
                stored_first = next((d for d, c, p in mine if c >= k and not p), None)
                if first is not None and first >= received_s:
                    every.append((first - received_s) * 1000)
                if stored_first is not None and stored_first >= received_s:
                    confirmed.append((stored_first - received_s) * 1000)
    every.sort()
    confirmed.sort()
    return {"clients": clients, "seconds": seconds, "messages": received[0], "trades": len(every),
            "p50_ms": _quantile(every, 0.5), "p99_ms": _quantile(every, 0.99),
            "max_ms": round(every[-1], 1) if every else None,
            "confirmed_p50_ms": _quantile(confirmed, 0.5), "confirmed_p99_ms": _quantile(confirmed, 0.99)}


def _stored_trades(base: str, start: str) -> dict[str, list[tuple[str, int, float]]]:
    """The market's stored trades from ``start``, per one-minute bucket, in (time, id) order."""
    import httpx

    result: dict[str, list[tuple[str, int, float]]] = {}
    cursor = None
    while True:
        params: dict[str, str | int] = {**MARKET, "start": start, "limit": 5000}
        if cursor:
            params["cursor"] = cursor
        body = httpx.get(f"{base}/v1/trades", params=params, timeout=30).json()
        for trade in body["trades"]:
            result.setdefault(trade["time"][:16] + ":00Z", []).append(
                (trade["time"], int(trade["trade_id"]), _micros(trade["received_at"])))
        cursor = body["next_cursor"]
        if not cursor:
            return result


def latency(workdir: Path, seconds: float, warm_up: float) -> dict[str, Any]:
    from ticklake.bench.platform_stages import _Running

    running = _Running(workdir, "stream-500", 500)
    try:
        time.sleep(warm_up)
        url = f"ws://127.0.0.1:{running.port}/v1/stream"
        one = asyncio.run(_follow(url, 1, seconds))
        hundred = asyncio.run(_follow(url, 100, seconds))
    finally:
        running.close()
    return {"one": one, "hundred": hundred}


# --- fan-out ---------------------------------------------------------------------------------------
def fanout_server(port: int, seconds: float, mode: str) -> None:
    """The stream alone: a hub fed batches of one trade as fast as the loop allows (``mode`` "hub"), or
    the same bytes written straight to each socket ("raw"). Prints CPU seconds used when done."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from ticklake.api.live import LiveHub
    from ticklake.api.stream import StreamEndpoints
    from ticklake.model import Trade

    hub = LiveHub(None, queue_size=100_000)  # type: ignore[arg-type]  # trades only: no candle reads
    sockets: list[WebSocket] = []
    sample = Trade("binance", "BTC/USDT", "BTCUSDT", 1, "64123.1", "0.015", "buy", int(time.time() * 1e6),
                   int(time.time() * 1e6), "bench", 1)
    encoded = orjson.dumps({"type": "trades", **MARKET, "trades": [{"trade_id": "1"}], "cursor": "x" * 32})

    async def raw(websocket: WebSocket) -> None:
        await websocket.accept()
        sockets.append(websocket)
        while True:
            await asyncio.sleep(3600)

    routes = [WebSocketRoute("/raw", raw), *StreamEndpoints(hub).routes()]
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))

    async def drive() -> None:
        serving = asyncio.create_task(server.serve())
        print(json.dumps({"ready": port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the clients are in
        start = resource.getrusage(resource.RUSAGE_SELF)
        deadline = time.monotonic() + seconds
        trade_id = 1
        while time.monotonic() < deadline:
            if mode == "hub":
                # As fast as the subscribers' senders take it: never more than 100 messages queued each.
                if max((x.queue.qsize() for subs in hub._subscribers.values() for x in subs), default=0) < 100:
                    for _ in range(20):
                        trade_id += 1
                        hub.committed([msgspec_replace(sample, trade_id)])
            else:
                await asyncio.gather(*(s.send_text(encoded.decode()) for s in sockets))
            await asyncio.sleep(0)
        end = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"cpu_s": end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime}), flush=True)
        await serving  # until terminated by run_fanout, once the clients have counted

    asyncio.run(drive())


def msgspec_replace(trade: Any, trade_id: int) -> Any:
    import msgspec

    return msgspec.structs.replace(trade, trade_id=trade_id, ts_us=trade.ts_us + trade_id)


async def _count(url: str, clients: int, seconds: float, subscribe: bool) -> int:
    from websockets.asyncio.client import connect

    counts = [0]
    ready = asyncio.Event()
    connected = [0]

    async def one() -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await count_one()

    async def count_one() -> None:
        async with connect(url, max_size=None) as ws:
            if subscribe:
                await ws.send(json.dumps({"op": "subscribe", "channel": "trades", **MARKET}))
                await ws.recv()  # subscribed
            connected[0] += 1
            if connected[0] == clients:
                ready.set()
            deadline = time.monotonic() + seconds + 30
            with_timeout = True
            while with_timeout and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(ws.recv(), 2.0)
                    counts[0] += 1
                except TimeoutError:
                    with_timeout = False

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await ready.wait()
    print("go", flush=True)  # tells run_fanout to start the server's clock
    await asyncio.gather(*tasks)
    return counts[0]


def fanout(seconds: float, clients: int = 100) -> dict[str, Any]:
    result: dict[str, Any] = {"clients": clients}
    for mode in ("hub", "raw"):
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "ticklake.bench.stream_stages", "fanout", str(port),
                                   str(seconds), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "TZ": "UTC"})
        assert server.stdin is not None and server.stdout is not None
        server.stdout.readline()  # ready
        time.sleep(0.5)
        path = "/v1/stream" if mode == "hub" else "/raw"
        clients_process = subprocess.Popen(
            [sys.executable, "-c", "import asyncio, sys; from ticklake.bench.stream_stages import _count; "
             f"print(asyncio.run(_count('ws://127.0.0.1:{port}{path}', {clients}, {seconds}, {mode == 'hub'})))"],
            stdout=subprocess.PIPE, text=True)
        assert clients_process.stdout is not None
        clients_process.stdout.readline()  # go: every client is connected (and subscribed)
        server.stdin.write("go\n")
        server.stdin.flush()
        cpu = json.loads(server.stdout.readline())["cpu_s"]
        delivered = int(clients_process.stdout.readline())
        clients_process.wait(60)
        server.kill()  # (a graceful stop would wait on the raw handlers)
        server.wait(30)
        result[mode] = {"messages": delivered, "messages_per_s": round(delivered / seconds),
                        "server_cores": round(cpu / seconds, 2)}
    return result


def run_stream_stages(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    print("  stream: trade -> candle update delivered, 1 and 100 clients, at 500 trades/s ...", file=sys.stderr,
          flush=True)
    report = {"latency": latency(workdir, sizes["stream_window_s"], sizes["platform_warmup_s"])}
    print("  stream: fan-out to 100 clients, next to raw sends ...", file=sys.stderr, flush=True)
    report["fanout"] = fanout(sizes["stream_fanout_s"])
    return report


if __name__ == "__main__":
    if sys.argv[1] == "fanout":
        fanout_server(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(f"unknown stage {sys.argv[1]}")
