"""``python -m ticklake.simulator``: run the simulated venues until Ctrl-C and print their URLs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from ticklake.settings import SimulatorSettings
from ticklake.simulator.server import Simulator


def _parse_args() -> argparse.Namespace:
    defaults = SimulatorSettings()
    parser = argparse.ArgumentParser(prog="python -m ticklake.simulator", description=__doc__)
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="tape seed (default: random, printed)")
    parser.add_argument("--trades-per-second", type=float, default=defaults.trades_per_second,
                        help="average trades per second per symbol")
    parser.add_argument("--port", type=int, default=0,
                        help="first port: binance, kraken, coinbase get PORT, PORT+1, PORT+2 (default: ephemeral)")
    return parser.parse_args()


async def _main(args: argparse.Namespace) -> None:
    settings = SimulatorSettings(host=args.host, seed=args.seed, trades_per_second=args.trades_per_second)
    ports = {ex: args.port + i for i, ex in enumerate(("binance", "kraken", "coinbase"))} if args.port else None
    async with Simulator(settings, ports=ports) as sim:
        print(f"ticklake simulator, seed {sim.seed}, {settings.trades_per_second:g} trades/s per symbol")
        for exchange, url in sim.ws_urls.items():
            print(f"  TICKLAKE_VENUES__{exchange.upper()}__WS_URL={url}")
        print("Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(_parse_args()))


if __name__ == "__main__":
    main()
