"""The simulated venues of a drill, in a process of their own (they trade on while ticklake's roles
die), with a control endpoint for the drill: the tapes, the oracle of what the venues traded. The
tests that kill ticklake's processes run the same process (``command``), for the same reasons.

    python -m ticklake.drill.venues SEED TRADES_PER_SECOND '{"binance": ["BTC/USDT"], ...}'

prints one JSON line ``{"ws_urls": {...}, "rest_urls": {...}, "control_url": "http://127.0.0.1:P"}``
once listening, then serves, on loopback:

* ``GET /tape?exchange=E&symbol=S[&start_us=A&end_us=B]``: the venue's trades of the market so far
  (exchange time in [A, B) when given), oldest first, as ``[trade_id, price, qty, side, ts_us]``
  (``TAPE_FIELDS``);
* ``POST /pause``: stop trading (every venue), so that a tape read afterwards is final.

It exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator

TAPE_FIELDS = ("trade_id", "price", "qty", "side", "ts_us")  # a tape row's columns, in order


def command(seed: int, rate: float, markets: dict[str, list[str]]) -> list[str]:
    """The command line that starts this process: ``markets`` traded at ``rate`` trades/s each."""
    return [sys.executable, "-m", "ticklake.drill.venues", str(seed), str(rate), json.dumps(markets)]


def _control_app(sim: Simulator) -> Starlette:
    async def tape(request: Request) -> Response:
        params = request.query_params
        try:
            trades = sim.tape(params["exchange"], params["symbol"])
            start, end = int(params.get("start_us", 0)), int(params.get("end_us", 2**63 - 1))
        except (KeyError, ValueError) as exc:
            return Response(f"bad request: {exc!r}", status_code=400)
        rows = [[getattr(t, field) for field in TAPE_FIELDS] for t in trades if start <= t.ts_us < end]
        return Response(orjson.dumps(rows), media_type="application/json")

    async def pause(_request: Request) -> Response:
        sim.pause()
        return Response(b"{}", media_type="application/json")

    return Starlette(routes=[Route("/tape", tape), Route("/pause", pause, methods=["POST"])])


async def main(seed: int, rate: float, venues: dict[str, list[str]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Simulator(SimulatorSettings(seed=seed, trades_per_second=rate), venues) as sim:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        control = uvicorn.Server(uvicorn.Config(_control_app(sim), log_level="warning", lifespan="off"))
        serving = asyncio.create_task(control.serve(sockets=[sock]))
        while not control.started:
            await asyncio.sleep(0.01)
        port = sock.getsockname()[1]
        print(json.dumps({"ws_urls": sim.ws_urls, "rest_urls": sim.rest_urls,
                          "control_url": f"http://127.0.0.1:{port}"}), flush=True)
        await stop.wait()
        control.should_exit = True
        await serving


def run(argv: list[str]) -> None:
    markets: dict[str, Any] = json.loads(argv[2])
    asyncio.run(main(int(argv[0]), float(argv[1]), markets))


if __name__ == "__main__":
    run(sys.argv[1:])
