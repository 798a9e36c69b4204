"""The simulator as a separate, long-lived process for tests that kill ticklake itself.

    python -m tests.sim_server TAPES.json SEED TRADES_PER_SECOND '{"binance": ["BTC/USDT"], ...}'

Prints one JSON line {"ws_urls": {...}, "rest_urls": {...}} once listening; on SIGTERM writes every
symbol's full tape to TAPES.json (the oracle) and exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import msgspec

from ticklake.settings import SimulatorSettings
from ticklake.simulator import Simulator


async def main(out: str, seed: int, rate: float, venues: dict[str, list[str]]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Simulator(SimulatorSettings(seed=seed, trades_per_second=rate), venues) as sim:
        print(json.dumps({"ws_urls": sim.ws_urls, "rest_urls": sim.rest_urls}), flush=True)
        await stop.wait()
        # Stop trading first: the venues trade on while the servers close, and a trade sent after the
        # tape was taken would be stored but missing from the oracle.
        sim.pause()
        tapes = {f"{ex}|{sym}": msgspec.to_builtins(sim.tape(ex, sym)) for ex, syms in venues.items() for sym in syms}
    with open(out, "w", encoding="utf-8") as file:
        json.dump(tapes, file)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])))
