"""``python -m ticklake.simulator``: run the simulated venues until Ctrl-C and print their URLs.

Venues and symbols are those ticklake's configuration enables (``ticklake.toml``/environment), so
the printed ``TICKLAKE_VENUES__<VENUE>__WS_URL`` and ``..._REST_URL`` lines can be exported before
``ticklake up``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from ticklake.settings import ConfigError, load_settings
from ticklake.simulator.server import Simulator
from ticklake.venues import NAMES


def pinned_ports(first: int, names: Sequence[str] = NAMES) -> tuple[dict[str, int], dict[str, int]]:
    """The WebSocket and REST ports of each venue from ``--port first``: WebSocket ports first, one per
    venue in registry order, then REST ports, so that no two venues share one however many there are
    (with binance, kraken, coinbase: 0, 1, 2 and 3, 4, 5 after ``first``, as before venues were a
    registry)."""
    ports = {name: first + i for i, name in enumerate(names)}
    rest_ports = {name: first + len(names) + i for i, name in enumerate(names)}
    return ports, rest_ports


def _parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ticklake.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="interface to listen on (default: simulator.host, 127.0.0.1)")
    parser.add_argument("--seed", type=int, help="tape seed (default: simulator.seed, else random and printed)")
    parser.add_argument("--trades-per-second", type=float, help="average trades per second per symbol")
    parser.add_argument("--port", type=int, default=0,
                        help=f"first port: the N={len(NAMES)} venues ({', '.join(NAMES)}) get PORT .. PORT+N-1 "
                             "for WebSocket and PORT+N .. PORT+2N-1 for REST, in that order (default: ephemeral)")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        sys.exit(str(exc))
    overrides = {key: value for key, value in (("host", args.host), ("seed", args.seed),
                                               ("trades_per_second", args.trades_per_second)) if value is not None}
    settings = settings.model_copy(update={"simulator": settings.simulator.model_copy(update=overrides)})
    ports, rest_ports = pinned_ports(args.port) if args.port else (None, None)
    async with Simulator.from_settings(settings, ports=ports, rest_ports=rest_ports) as sim:
        print(f"ticklake simulator, seed {sim.seed}, {settings.simulator.trades_per_second:g} trades/s per symbol")
        for exchange, url in sim.ws_urls.items():
            print(f"  TICKLAKE_VENUES__{exchange.upper()}__WS_URL={url}")
            print(f"  TICKLAKE_VENUES__{exchange.upper()}__REST_URL={sim.rest_urls.get(exchange, '')}")
        print("Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(_parse_args(argv)))


if __name__ == "__main__":
    main()
