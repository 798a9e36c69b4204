"""The simulated venues' REST APIs: one small HTTP server per venue, serving its whole tape.

Each venue module defines a ``RestApi`` subclass with its real paths and formats (Binance
``/api/v3/historicalTrades`` and ``/api/v3/trades``, Kraken ``/0/public/Trades``, Coinbase Exchange
``/products/{product_id}/trades``). This module holds what they share: the HTTP server (Starlette
served by ``uvicorn.Server`` in the simulator's event loop, on an ephemeral loopback port), the rate
limiters, scripted failures (``rest_fail_next``) and a record of every request.

REST serves the tape as it stands: every trade generated so far, including the ones ``skip_next``
kept off the sockets (that is what backfill is for). It never advances the tape itself, so a trade
cannot reach REST without also being published to the sockets that should carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticklake.simulator.tape import TapeTrade

if TYPE_CHECKING:
    from ticklake.simulator.venue import VenueServer


@dataclass(frozen=True)
class RestLimit:
    """A venue's REST rate limit; a zero turns that part off (``RestLimit()`` limits nothing).

    * ``per_second``/``burst``: a token bucket of ``burst`` requests refilled at ``per_second``
      (Kraken and Coinbase count requests per IP this way);
    * ``weight_per_window``: request weight per fixed window of ``window_s`` seconds (Binance: 6000
      per minute, reported in ``X-MBX-USED-WEIGHT-1M``). Past it: 429 with ``Retry-After`` (seconds
      to the window's end); a request refused more than ``ban_after`` times in one window bans the
      client for ``ban_s`` seconds: 418 with ``Retry-After`` until the ban ends;
    * ``error_status``: the HTTP status of Kraken's ``EGeneral:Too many requests`` reply (Kraken
      answers 200 with the error in the body; 429 is there for clients that want to test both).
    """

    per_second: float = 0.0
    burst: int = 0
    weight_per_window: int = 0
    window_s: float = 60.0
    ban_after: int = 2
    ban_s: float = 120.0
    error_status: int = 200


@dataclass(frozen=True)
class RestRecord:
    """One REST request the venue answered: what was asked, with which status."""

    at: float  # time.time()
    path: str
    query: str
    status: int


class TokenBucket:
    """``burst`` tokens refilled at ``rate`` per second; a request takes one (Coinbase's "lazy-fill
    token bucket", docs.cdp.coinbase.com exchange/rest-api/rate-limits)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.at = time.monotonic()

    def take(self) -> float | None:
        """None when admitted, else the seconds until a token is back."""
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


class WeightWindow:
    """Binance's request weight per fixed window (wall-clock aligned, as Binance's minutes are)."""

    def __init__(self, limit: int, window_s: float, ban_after: int, ban_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.ban_after = ban_after
        self.ban_s = ban_s
        self.window = -1
        self.used = 0
        self.refused = 0
        self.banned_until = 0.0

    def _roll(self, now: float) -> None:
        window = math.floor(now / self.window_s)
        if window != self.window:
            self.window, self.used, self.refused = window, 0, 0

    def used_now(self) -> int:
        self._roll(time.time())
        return self.used

    def take(self, weight: int) -> tuple[int, float] | None:
        """None when admitted, else (429 or 418, seconds to wait)."""
        now = time.time()
        if now < self.banned_until:
            return 418, self.banned_until - now
        self._roll(now)
        if self.used + weight <= self.limit:
            self.used += weight
            return None
        self.refused += 1
        if self.refused > self.ban_after:
            self.banned_until = now + self.ban_s
            self.refused = 0  # after the ban, 429s first again
            return 418, self.ban_s
        return 429, (self.window + 1) * self.window_s - now


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, dict(headers or {}), media_type="application/json")


def retry_after(seconds: float | None) -> dict[str, str]:
    """A ``Retry-After`` header in whole seconds (at least 1), or none."""
    return {} if seconds is None else {"Retry-After": str(max(1, math.ceil(seconds)))}


def index_of_id(trades: list[TapeTrade], trade_id: int) -> int:
    """Position of the first trade whose id is ``trade_id`` or more (tape ids are ascending)."""
    return bisect_left(trades, trade_id, key=lambda t: t.trade_id)


class Rejected(Exception):
    """Raised by a handler to answer with ``response`` (a bad parameter, an unknown symbol)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


Handler = Callable[[Request], Awaitable[Response]]


class RestApi(ABC):
    """One venue's REST endpoints over its tapes, behind its rate limit and scripted failures."""

    def __init__(self, venue: VenueServer[Any], limit: RestLimit) -> None:
        self.venue = venue
        self.records: list[RestRecord] = []
        self.set_limit(limit)

    def set_limit(self, limit: RestLimit) -> None:
        self.limit = limit
        self.bucket = TokenBucket(limit.per_second, limit.burst) if limit.per_second > 0 else None
        self.weights = (WeightWindow(limit.weight_per_window, limit.window_s, limit.ban_after, limit.ban_s)
                        if limit.weight_per_window > 0 else None)

    @abstractmethod
    def routes(self) -> list[Route]:
        """The venue's paths, each handler wrapped with ``guarded``."""

    @abstractmethod
    def failure(self, status: int, wait_s: float | None) -> Response:
        """The venue's reply when it refuses a request with ``status`` (rate limit, ban, outage)."""

    def extra_headers(self) -> dict[str, str]:
        """Headers on every response (Binance: the used weight)."""
        return {}

    def guarded(self, handler: Handler, weight: int = 1) -> Handler:
        """``handler`` behind scripted failures and the rate limit, recorded."""

        async def endpoint(request: Request) -> Response:
            response = self._refusal(weight)
            if response is None:
                try:
                    response = await handler(request)
                except Rejected as rejected:
                    response = rejected.response
            response.headers.update(self.extra_headers())
            self.records.append(RestRecord(time.time(), request.url.path, request.url.query, response.status_code))
            return response

        return endpoint

    def _refusal(self, weight: int) -> Response | None:
        scripted = self.venue.faults.take_rest_failure()
        if scripted is not None:
            return self.failure(*scripted)
        if self.weights is not None:
            refused = self.weights.take(weight)
            if refused is not None:
                return self.failure(*refused)
        if self.bucket is not None:
            wait = self.bucket.take()
            if wait is not None:
                return self.rate_limited(wait)
        return None

    def rate_limited(self, wait_s: float) -> Response:
        """The reply when the token bucket is empty. Neither Kraken nor Coinbase document a
        ``Retry-After`` header, so by default there is none."""
        return self.failure(429, None)


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the simulator lives inside someone else's process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class RestServer:
    """A Starlette app served by uvicorn on ``host:port`` (0: ephemeral) in the running loop."""

    def __init__(self, api: RestApi) -> None:
        self.api = api
        self.host = ""
        self.port = 0
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str, port: int = 0) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the listening
        # socket says so, and without it Nagle + delayed ACKs add 40 ms to every keep-alive request.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.host, self.port = host, int(sock.getsockname()[1])
        config = uvicorn.Config(Starlette(routes=self.api.routes()), http="h11", lifespan="off",
                                log_config=None, access_log=False, timeout_graceful_shutdown=1)
        self._server = server = _QuietServer(config)
        self._task = task = asyncio.create_task(server.serve(sockets=[sock]),
                                                name=f"sim-{self.api.venue.exchange}-rest")
        while not server.started:
            if task.done():
                await self.close()
                raise RuntimeError(f"{self.api.venue.exchange} simulator: REST server did not start")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None and task is not None:
            server.should_exit = True
            done, _ = await asyncio.wait([task], timeout=3.0)
            if not done:
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
