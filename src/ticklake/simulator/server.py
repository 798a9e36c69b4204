"""The local exchange simulator: one WebSocket server per venue on loopback, speaking its protocol.

    async with Simulator(settings.simulator, {"binance": ["BTC/USDT"]}) as sim:
        feed_settings.venues.binance.ws_url = sim.ws_urls["binance"]
        ...
        assert stored == sim.tape("binance", "BTC/USDT")

Feed handlers connect with their ordinary code and the ``ws_url`` override; nothing in them knows
it is a simulator. The tapes are the oracle for tests and for ``ticklake up --simulate``.
"""

from __future__ import annotations

import logging
import random
from types import TracebackType
from typing import Any

from ticklake.settings import Settings, SimulatorSettings
from ticklake.simulator.binance import BinanceServer
from ticklake.simulator.coinbase import CoinbaseServer
from ticklake.simulator.kraken import KrakenServer
from ticklake.simulator.tape import TapeTrade
from ticklake.simulator.venue import ConnectionRecord, VenueOptions, VenueServer
from ticklake.symbols import DEFAULT_SYMBOLS

log = logging.getLogger(__name__)

VENUE_SERVERS: dict[str, type[VenueServer[Any]]] = {
    "binance": BinanceServer,
    "kraken": KrakenServer,
    "coinbase": CoinbaseServer,
}


class Simulator:
    """Simulated venues on ``settings.host``; an async context manager.

    ``venues`` maps exchange -> canonical symbols (default: ticklake's default symbols for all
    three). ``options`` shortens protocol timings for tests, for all venues or per exchange.
    ``ports`` pins ports (default 0: an ephemeral port per venue).
    """

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        venues: dict[str, list[str]] | None = None,
        *,
        options: VenueOptions | dict[str, VenueOptions] | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.settings = settings or SimulatorSettings()
        # No seed configured: pick one and say which, so a surprising run can be replayed.
        self.seed = self.settings.seed if self.settings.seed is not None else random.randrange(2**31)
        chosen = venues if venues is not None else {ex: list(syms) for ex, syms in DEFAULT_SYMBOLS.items()}
        unknown = set(chosen) - set(VENUE_SERVERS)
        if unknown:
            raise ValueError(f"no simulator for: {', '.join(sorted(unknown))}")
        self._ports = ports or {}
        self.venues: dict[str, VenueServer[Any]] = {}
        for exchange, symbols in chosen.items():
            venue_options = options.get(exchange, VenueOptions()) if isinstance(options, dict) else options
            self.venues[exchange] = VENUE_SERVERS[exchange](
                symbols, self.seed, self.settings.trades_per_second, venue_options or VenueOptions()
            )
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Simulator:
        """A simulator for exactly the enabled venues and symbols of ``settings`` (``up --simulate``)."""
        venues = {name: list(venue.symbols) for name, venue in settings.venues.enabled().items()
                  if venue.symbols and name in VENUE_SERVERS}
        return cls(settings.simulator, venues, **kwargs)

    def settings_for(self, settings: Settings) -> Settings:
        """A copy of ``settings`` whose simulated venues point at this simulator (``ws_url``)."""
        venues = settings.venues.model_copy(update={
            name: getattr(settings.venues, name).model_copy(update={"ws_url": url})
            for name, url in self.ws_urls.items()
        })
        return settings.model_copy(update={"venues": venues})

    async def start(self) -> None:
        try:
            for exchange, venue in self.venues.items():
                await venue.start(self.settings.host, self._ports.get(exchange, 0))
        except BaseException:
            await self.close()
            raise
        self._started = True
        log.info("simulator (seed %d) listening: %s", self.seed,
                 ", ".join(f"{ex} {url}" for ex, url in self.ws_urls.items()))

    async def close(self) -> None:
        for venue in self.venues.values():
            await venue.close()
        self._started = False

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def ws_urls(self) -> dict[str, str]:
        """exchange -> base URL to put in ``VenueSettings.ws_url``."""
        return {exchange: venue.base_url for exchange, venue in self.venues.items() if venue.port}

    def venue(self, exchange: str) -> VenueServer[Any]:
        """The venue's server, for scripting it (``frame_filter``, options) in tests."""
        return self.venues[exchange]

    def tape(self, exchange: str, symbol: str) -> list[TapeTrade]:
        """Every trade the venue produced for ``symbol`` so far, in order: the oracle."""
        return self.venues[exchange].tape(symbol)

    def drop_connections(self, exchange: str) -> int:
        """Cut every client connection to the venue (no CLOSE frame); returns how many."""
        return self.venues[exchange].drop_connections()

    def pause(self, exchange: str | None = None) -> None:
        """Stop producing trades (one venue or all); heartbeats and pings continue."""
        for name in [exchange] if exchange else list(self.venues):
            self.venues[name].pause()

    def resume(self, exchange: str | None = None) -> None:
        for name in [exchange] if exchange else list(self.venues):
            self.venues[name].resume()

    def connections(self, exchange: str) -> list[ConnectionRecord]:
        """Every connection the venue accepted so far: path, messages received, how it ended."""
        return list(self.venues[exchange].records)
