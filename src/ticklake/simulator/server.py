"""The local exchange simulator: per venue on loopback, a WebSocket server speaking its protocol and
an HTTP server serving its REST trade endpoints.

    async with Simulator(settings.simulator, {"binance": ["BTC/USDT"]}) as sim:
        settings = sim.settings_for(settings)  # ws_url and rest_url of each simulated venue
        ...
        sim.skip_next("binance", "BTC/USDT", 3)  # a gap the feed must find and backfill over REST
        ...
        assert stored == sim.tape("binance", "BTC/USDT")

Feed handlers connect with their ordinary code and the ``ws_url``/``rest_url`` overrides; nothing in
them knows it is a simulator. The tapes are the oracle for tests and for ``ticklake up --simulate``.
Faults (faults.py) are scripted per venue through the methods below and logged in ``fault_log``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ticklake.settings import Settings, SimulatorSettings
from ticklake.simulator.faults import CHAOS_FAULTS, Chaos, FaultEvent
from ticklake.simulator.registry import server_class
from ticklake.simulator.rest import RestLimit, RestRecord
from ticklake.simulator.tape import TapeTrade
from ticklake.simulator.venue import ConnectionRecord, VenueOptions, VenueServer
from ticklake.venues import VENUES

log = logging.getLogger(__name__)

class Simulator:
    """Simulated venues on ``settings.host``; an async context manager.

    ``venues`` maps exchange -> canonical symbols (default: ticklake's default symbols of
    every registered venue). ``options`` shortens protocol timings for tests, for all venues or per exchange
    (``VenueOptions``: also ``max_connection_age_s``, ``shutdown_grace_s``, ``rest_limit``).
    ``ports``/``rest_ports`` pin the WebSocket/REST ports (default 0: ephemeral ports).

    URLs: ``ws_urls`` and ``rest_urls`` (exchange -> base URL); ``settings_for(settings)`` puts both
    into a copy of ticklake's settings. REST paths are the venues' own:

    * binance  ``GET {rest}/api/v3/historicalTrades?symbol=BTCUSDT&fromId=N&limit=L`` and
      ``GET {rest}/api/v3/trades?symbol=BTCUSDT&limit=L``;
    * kraken   ``GET {rest}/0/public/Trades?pair=BTC/USD&since=<ns>&count=L``;
    * coinbase ``GET {rest}/products/BTC-USD/trades?limit=L&after=<id>&before=<id>``.

    REST serves every tape trade, including those no socket carried. Formats and rate limits are
    described in each venue's ``ticklake/venues/<name>/simulated.py``.

    Faults, each for one venue, each logged in ``fault_log`` (see faults.py for what counts as a
    "trade frame"; counts add up when a fault is scheduled again before it ran out):

    * ``skip_next(exchange, symbol, count)``: the next ``count`` trades of ``symbol`` go on no socket
      (not in live frames, not in later snapshots); they stay on the tape and on REST
      (``skipped_ids`` lists them);
    * ``stall(exchange, seconds)``: open connections get nothing at all (trades, heartbeats, pings,
      pongs) for ``seconds`` and are not closed; trades published meanwhile are lost to them, stay
      on REST; connections opened during the stall are served normally;
    * ``duplicate_next(exchange, count)``: the next ``count`` trade frames are sent twice in a row;
    * ``reorder_next(exchange, count)``: the next ``count`` trade frames are held, then released
      in a shuffled (never unchanged) order once all are in or ``max_hold_s`` passed;
    * ``malformed_next(exchange, count)``: the next ``count`` trade frames are cut in half and end
      in U+FFFD U+FFFD: invalid JSON; their trades (``garbled_ids``) are on REST only;
    * ``shutdown(exchange)``: Binance sends ``serverShutdown`` then closes after
      ``shutdown_grace_s``; Kraken and Coinbase close at once with 1001 (going away);
    * ``drop_connections(exchange)``: cut every connection without a CLOSE frame;
    * ``rest_fail_next(exchange, count, status=429, retry_after_s=1)``: the next ``count`` REST
      requests fail with ``status`` and the venue's error body (and ``Retry-After``);
    * ``set_rest_limit(exchange, RestLimit(...))``: change the venue's REST rate limit;
    * option ``max_connection_age_s``: the server closes older connections (Binance: 24 h);
    * ``chaos(seed, mean_interval_s)``: a background task applying a random mix of the above
      (not the permanent settings); ``stop_chaos()`` ends it;
    * ``clear_faults(exchange=None)``: cancel what is pending, release held frames, end stalls.

    ``frame_filter`` (on ``venue(exchange)``), ``pause``/``resume`` keep working alongside.
    """

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        venues: dict[str, list[str]] | None = None,
        *,
        options: VenueOptions | dict[str, VenueOptions] | None = None,
        ports: dict[str, int] | None = None,
        rest_ports: dict[str, int] | None = None,
    ) -> None:
        self.settings = settings or SimulatorSettings()
        # No seed configured: pick one and say which, so a surprising run can be replayed.
        self.seed = self.settings.seed if self.settings.seed is not None else random.randrange(2**31)
        chosen = venues if venues is not None else {name: list(v.default_symbols) for name, v in VENUES.items()}
        unknown = set(chosen) - set(VENUES)
        if unknown:
            raise ValueError(f"no simulator for: {', '.join(sorted(unknown))}")
        self._ports = ports or {}
        self._rest_ports = rest_ports or {}
        self.fault_log: list[FaultEvent] = []
        self._chaos: Chaos | None = None
        self.venues: dict[str, VenueServer[Any]] = {}
        for exchange, symbols in chosen.items():
            venue_options = options.get(exchange, VenueOptions()) if isinstance(options, dict) else options
            self.venues[exchange] = server_class(exchange)(
                symbols, self.seed, self.settings.trades_per_second, venue_options or VenueOptions()
            )
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Simulator:
        """A simulator for exactly the enabled venues and symbols of ``settings`` (``up --simulate``)."""
        venues = {name: list(venue.symbols) for name, venue in settings.venues.enabled().items()
                  if venue.symbols and name in VENUES}
        return cls(settings.simulator, venues, **kwargs)

    def settings_for(self, settings: Settings) -> Settings:
        """A copy of ``settings`` whose simulated venues point at this simulator (``ws_url``, ``rest_url``)."""
        rest_urls = self.rest_urls
        venues = settings.venues.model_copy(update={
            name: settings.venues[name].model_copy(update={"ws_url": url, "rest_url": rest_urls.get(name, "")})
            for name, url in self.ws_urls.items()
        })
        return settings.model_copy(update={"venues": venues})

    async def start(self) -> None:
        try:
            for exchange, venue in self.venues.items():
                await venue.start(self.settings.host, self._ports.get(exchange, 0), self._rest_ports.get(exchange, 0))
        except BaseException:
            await self.close()
            raise
        self._started = True
        log.info("simulator (seed %d) listening: %s", self.seed,
                 ", ".join(f"{ex} {url}" for ex, url in self.ws_urls.items()))

    async def close(self) -> None:
        await self.stop_chaos()
        # Together: each REST server takes up to 0.1 s to notice it should exit (uvicorn's main loop).
        results = await asyncio.gather(*(venue.close() for venue in self.venues.values()), return_exceptions=True)
        self._started = False
        for result in results:
            if isinstance(result, BaseException):
                raise result

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

    @property
    def rest_urls(self) -> dict[str, str]:
        """exchange -> REST base URL (``http://127.0.0.1:PORT``) to put in ``VenueSettings.rest_url``."""
        return {exchange: venue.rest_url for exchange, venue in self.venues.items() if venue.rest_url}

    def venue(self, exchange: str) -> VenueServer[Any]:
        """The venue's server, for scripting it (``frame_filter``, options) in tests."""
        return self.venues[exchange]

    def tape(self, exchange: str, symbol: str) -> list[TapeTrade]:
        """Every trade the venue produced for ``symbol`` so far, in order: the oracle."""
        return self.venues[exchange].tape(symbol)

    def drop_connections(self, exchange: str) -> int:
        """Cut every client connection to the venue (no CLOSE frame); returns how many."""
        return int(self._apply(exchange, "drop_connections", {}))

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

    def rest_requests(self, exchange: str) -> list[RestRecord]:
        """Every REST request the venue answered so far: path, query, status."""
        rest = self.venues[exchange].rest
        return list(rest.api.records) if rest is not None else []

    # --- faults --------------------------------------------------------------------------------
    def skip_next(self, exchange: str, symbol: str, count: int = 1) -> None:
        """The next ``count`` trades of ``symbol`` go on no socket; they stay on the tape and REST."""
        self._apply(exchange, "skip_next", {"symbol": symbol, "count": count})

    def stall(self, exchange: str, seconds: float) -> int:
        """Open connections get nothing for ``seconds`` (not closed); returns how many."""
        return int(self._apply(exchange, "stall", {"seconds": seconds}))

    def duplicate_next(self, exchange: str, count: int = 1) -> None:
        """The next ``count`` trade frames are sent twice in a row."""
        self._apply(exchange, "duplicate_next", {"count": count})

    def reorder_next(self, exchange: str, count: int = 2, *, max_hold_s: float = 1.0) -> None:
        """The next ``count`` trade frames are held and released shuffled (at the latest ``max_hold_s``
        after the first was held)."""
        self._apply(exchange, "reorder_next", {"count": count, "max_hold_s": max_hold_s})

    def malformed_next(self, exchange: str, count: int = 1) -> None:
        """The next ``count`` trade frames are garbled (their trades are then on REST only)."""
        self._apply(exchange, "malformed_next", {"count": count})

    def shutdown(self, exchange: str) -> int:
        """Shut the venue's open connections the venue's way; returns how many."""
        return int(self._apply(exchange, "shutdown", {}))

    def rest_fail_next(self, exchange: str, count: int = 1, status: int = 429,
                       retry_after_s: float | None = 1) -> None:
        """The next ``count`` REST requests fail with ``status``, the venue's error body and
        ``Retry-After: retry_after_s`` (none when None; Kraken: none with status 200)."""
        self._apply(exchange, "rest_fail_next", {"count": count, "status": status, "retry_after_s": retry_after_s})

    def set_rest_limit(self, exchange: str, limit: RestLimit) -> None:
        """Replace the venue's REST rate limit (``RestLimit()``: none); counting starts afresh."""
        rest = self.venues[exchange].rest
        if rest is None:
            raise RuntimeError("the simulator is not started")
        rest.api.set_limit(limit)
        self._log(exchange, "set_rest_limit", {"limit": limit}, "script")

    def clear_faults(self, exchange: str | None = None) -> None:
        """Cancel pending faults, release held frames (in order), end stalls (one venue or all)."""
        for name in [exchange] if exchange else list(self.venues):
            self.venues[name].clear_faults()
            self._log(name, "clear_faults", {}, "script")

    def skipped_ids(self, exchange: str, symbol: str) -> list[int]:
        """Trade ids ``skip_next`` kept off every socket so far."""
        return list(self.venues[exchange].faults.skipped.get(symbol, ()))

    def garbled_ids(self, exchange: str, symbol: str) -> list[int]:
        """Trade ids whose live frames ``malformed_next`` garbled so far."""
        return list(self.venues[exchange].faults.garbled.get(symbol, ()))

    def chaos(self, seed: int, mean_interval_s: float, *, exchanges: Sequence[str] | None = None,
              faults: Sequence[str] = CHAOS_FAULTS, max_stall_s: float = 1.0) -> Chaos:
        """Start applying random faults (one every ``mean_interval_s`` on average) to ``exchanges``
        (default all), replacing any chaos already running. Each is logged in ``fault_log`` with
        source "chaos". The choices are deterministic given ``seed``."""
        if self._chaos is not None and self._chaos.task is not None:
            self._chaos.task.cancel()
        self._chaos = Chaos(self, seed, mean_interval_s, list(exchanges or self.venues), faults, max_stall_s)
        self._chaos.start()
        return self._chaos

    async def stop_chaos(self) -> None:
        if self._chaos is not None:
            await self._chaos.stop()
            self._chaos = None

    def fault_report(self) -> str:
        """``fault_log`` as lines, for an assertion message."""
        return "\n".join(str(event) for event in self.fault_log) or "(no faults)"

    def _log(self, exchange: str, fault: str, params: dict[str, Any], source: str) -> None:
        event = FaultEvent(time.time(), exchange, fault, params, source)
        self.fault_log.append(event)
        log.info("simulator fault: %s", event)

    def _apply(self, exchange: str, fault: str, params: dict[str, Any], source: str = "script") -> Any:
        """Apply one fault to a venue and log it (the scripted methods and chaos both come here)."""
        venue = self.venues.get(exchange)
        if venue is None:
            raise ValueError(f"no simulated venue {exchange!r}")
        faults = venue.faults
        count = int(params.get("count", 1))
        if count < 0:
            raise ValueError(f"count must not be negative: {count}")
        result: Any = None
        if fault == "skip_next":
            symbol = params["symbol"]
            if symbol not in venue.tapes:
                raise ValueError(f"{exchange} simulates no {symbol!r}")
            faults.skip[symbol] = faults.skip.get(symbol, 0) + count
        elif fault == "stall":
            result = venue.stall(float(params["seconds"]))
        elif fault == "duplicate_next":
            faults.duplicate += count
        elif fault == "reorder_next":
            faults.reorder += count
            faults.reorder_max_hold_s = float(params.get("max_hold_s", 1.0))
        elif fault == "malformed_next":
            faults.malformed += count
        elif fault == "drop_connections":
            result = venue.drop_connections()
        elif fault == "shutdown":
            result = venue.shutdown()
        elif fault == "rest_fail_next":
            failure = (int(params.get("status", 429)), params.get("retry_after_s", 1))
            faults.rest_failures.extend([failure] * count)
        else:
            raise ValueError(f"unknown fault {fault!r}")
        self._log(exchange, fault, params, source)
        return result
