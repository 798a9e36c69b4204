"""One HTTP client for every venue's public REST API, polite by construction.

* **Rate limiting**: a token bucket per venue, charged by request weight, so ticklake stays under the
  venue's limit instead of discovering it through errors. The defaults are half of each venue's
  documented public limit (the other half is left for anything else sharing the IP):

  | venue | documented (per IP) | bucket here |
  |---|---|---|
  | Binance | 6,000 request weight / min; ``historicalTrades`` weighs 25 | 3,000 / min, burst 1,000 |
  | Kraken | public calls: about 1 a second sustained | 1 / 2 s, burst 2 |
  | Coinbase Exchange | public: 10 requests / s, bursts to 15 | 5 / s, burst 10 |

* **Being told to wait**: HTTP 429, and Binance's 418 (an IP ban for ignoring 429s), carry
  ``Retry-After`` in seconds; the whole venue waits that long (or backs off when it is absent).
  Binance reports the weight used this minute in ``X-MBX-USED-WEIGHT-1M``: past 90 % of the limit,
  requests wait for the next minute. Kraken throttles with HTTP 200 and ``{"error":
  ["EGeneral:Too many requests"]}`` in the body; that is treated like a 429.
* **Failing**: timeouts, connection errors and 5xx are retried with exponential backoff and full
  jitter, up to ``max_attempts``; then ``RestError(retryable=True)`` lets the caller retry later.
  Any other 4xx is the request's fault, not the moment's: ``RestError(retryable=False)`` at once.
* **Counting**: every answer in ``ticklake_feed_rest_requests_total{exchange, status}`` (the HTTP
  status, ``throttled`` for Kraken's throttle body, ``timeout`` / ``error`` without an answer).

Sources: Binance binance-spot-api-docs ``rest-api.md`` (LIMITS, HTTP return codes); Coinbase
docs.cdp.coinbase.com/exchange/rest-api/rate-limits; Kraken docs.kraken.com spot REST rate limits
(public endpoints are limited per IP; the throttle answer is an ``EGeneral:Too many requests`` error).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx

from ticklake.ops.metrics import FEED_REST_REQUESTS
from ticklake.settings import FeedSettings

log = logging.getLogger("ticklake.feeds.rest")

DEFAULT_URLS: Final[dict[str, str]] = {
    "binance": "https://api.binance.com",
    "kraken": "https://api.kraken.com",
    "coinbase": "https://api.exchange.coinbase.com",
}


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``burst`` weight at most, refilled at ``per_second``."""

    burst: float
    per_second: float


DEFAULT_LIMITS: Final[dict[str, RateLimit]] = {
    "binance": RateLimit(burst=1000, per_second=50),
    "kraken": RateLimit(burst=2, per_second=0.5),
    "coinbase": RateLimit(burst=10, per_second=5),
}

_BINANCE_WEIGHT_HEADER: Final = "x-mbx-used-weight-1m"
BINANCE_WEIGHT_LIMIT_PER_MINUTE: Final = 6000
_KRAKEN_THROTTLED: Final = (b"EGeneral:Too many requests", b"EAPI:Rate limit exceeded")


class RestError(Exception):
    """A request that did not give a usable answer. ``retryable``: it may work later."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class RestResponse:
    status: int
    body: bytes
    headers: httpx.Headers
    received_us: int  # when the answer arrived, µs since the epoch

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class TokenBucket:
    """Weight-charged token bucket; ``take`` waits until the weight is available.

    Callers are served in arrival order (one lock), so a heavy request is not starved by light ones.
    ``hold(seconds)`` empties it for a while: what a 429's ``Retry-After`` asks for.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = limit.burst
        self._updated = clock()
        self._held_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        start = max(self._updated, self._held_until)
        if now > start:
            self._tokens = min(self.limit.burst, self._tokens + (now - start) * self.limit.per_second)
        self._updated = max(now, self._updated)

    def hold(self, seconds: float) -> None:
        """Let nothing through for ``seconds``, then refill from empty."""
        now = self._clock()
        self._refill(now)
        self._tokens = 0.0
        self._held_until = max(self._held_until, now + seconds)
        self._updated = now

    async def take(self, weight: float) -> None:
        weight = min(weight, self.limit.burst)  # a request heavier than the burst still goes, alone
        async with self._lock:
            while True:
                now = self._clock()
                self._refill(now)
                if now >= self._held_until and self._tokens >= weight:
                    self._tokens -= weight
                    return
                wait = max(self._held_until - now, 0.0)
                if self._tokens < weight:
                    wait = max(wait, (weight - self._tokens) / self.limit.per_second)
                await asyncio.sleep(wait)


def retry_after_s(headers: httpx.Headers, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds, or an HTTP date (RFC 9110); None when absent."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RestClient:
    """The shared REST client of the feeds: one connection pool, one rate limiter per venue.

    ``urls`` override venues' base URLs (``VenueSettings.rest_url``; the simulator sets them).
    ``transport`` is for tests (``httpx.MockTransport``).
    """

    def __init__(
        self,
        settings: FeedSettings | None = None,
        *,
        urls: Mapping[str, str] | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        max_attempts: int = 5,
        max_throttled: int = 20,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = settings or FeedSettings()
        self.urls = {**DEFAULT_URLS, **{k: v.rstrip("/") for k, v in (urls or {}).items() if v}}
        self.limits = {**DEFAULT_LIMITS, **(limits or {})}
        self.max_attempts = max_attempts
        self.max_throttled = max_throttled  # 429s in a row before giving up (for now)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._rng = rng or random.Random()
        self._buckets: dict[str, TokenBucket] = {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.rest_timeout_s),
            headers={"User-Agent": "ticklake/0.1 (+market data backfill)", "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )

    def bucket(self, exchange: str) -> TokenBucket:
        bucket = self._buckets.get(exchange)
        if bucket is None:
            limit = self.limits.get(exchange, RateLimit(burst=1, per_second=1))
            bucket = self._buckets[exchange] = TokenBucket(limit)
        return bucket

    def url(self, exchange: str, path: str) -> str:
        return self.urls[exchange] + path

    async def aclose(self) -> None:
        await self._http.aclose()

    def _delay(self, attempt: int) -> float:
        return self._rng.uniform(0.0, min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(attempt, 32)))

    async def get(self, exchange: str, path: str, params: Mapping[str, str | int], *,
                  weight: float = 1) -> RestResponse:
        """GET ``path`` of ``exchange`` with rate limiting and retries; a 2xx answer or ``RestError``."""
        url = self.url(exchange, path)
        bucket = self.bucket(exchange)
        failures = 0
        throttled = 0
        while True:
            await bucket.take(weight)
            try:
                response = await self._http.get(url, params=dict(params))
            except httpx.TimeoutException as exc:
                FEED_REST_REQUESTS.labels(exchange, "timeout").inc()
                reason = f"timed out ({type(exc).__name__})"
            except httpx.HTTPError as exc:  # connection refused/reset, protocol errors
                FEED_REST_REQUESTS.labels(exchange, "error").inc()
                reason = f"{type(exc).__name__}: {exc}"
            else:
                answer = RestResponse(response.status_code, response.content, response.headers,
                                      time.time_ns() // 1000)
                wait = self._throttle_wait(exchange, answer, throttled)
                if wait is not None:
                    throttled += 1
                    if throttled > self.max_throttled:
                        raise RestError(f"{exchange} REST: still throttled after {throttled - 1} waits",
                                        retryable=True, status=answer.status)
                    bucket.hold(wait)
                    log.warning("%s REST: throttled (HTTP %d) on %s; waiting %.1f s", exchange, answer.status,
                                path, wait)
                    continue
                FEED_REST_REQUESTS.labels(exchange, str(answer.status)).inc()
                if 200 <= answer.status < 300:
                    self._watch_weight(exchange, answer, bucket)
                    return answer
                reason = f"HTTP {answer.status}: {answer.text[:200]}"
                if answer.status < 500 and answer.status != 408:
                    raise RestError(f"{exchange} REST {path}: {reason}", retryable=False, status=answer.status)
            failures += 1
            if failures >= self.max_attempts:
                raise RestError(f"{exchange} REST {path}: {reason} ({failures} attempts)", retryable=True)
            delay = self._delay(failures)
            log.warning("%s REST %s: %s; retrying in %.1f s", exchange, path, reason, delay)
            await asyncio.sleep(delay)

    def _throttle_wait(self, exchange: str, answer: RestResponse, throttled: int) -> float | None:
        """How long the venue asked us to wait, or None when the answer is not a throttle."""
        status = answer.status
        if status in (429, 418):
            FEED_REST_REQUESTS.labels(exchange, str(status)).inc()
            after = retry_after_s(answer.headers)
            return after if after is not None else self._delay(throttled + 1)
        if exchange == "kraken" and status == 200 and any(marker in answer.body[:200] for marker in _KRAKEN_THROTTLED):
            FEED_REST_REQUESTS.labels(exchange, "throttled").inc()
            after = retry_after_s(answer.headers)
            # Kraken gives no wait; its public counter decays in seconds, so start at one.
            return after if after is not None else max(1.0, self._delay(throttled + 1))
        return None

    def _watch_weight(self, exchange: str, answer: RestResponse, bucket: TokenBucket) -> None:
        if exchange != "binance":
            return
        used = answer.headers.get(_BINANCE_WEIGHT_HEADER)
        if used is None or not used.strip().isdigit():
            return
        if int(used) >= BINANCE_WEIGHT_LIMIT_PER_MINUTE * 0.9:
            # Close to the per-minute limit: wait for the next minute rather than collect a 429 (and
            # risk the 418 ban that repeated 429s earn).
            wait = 60.0 - datetime.now(UTC).second + 0.5
            log.warning("binance REST: %s of %d request weight used this minute; pausing %.0f s", used,
                        BINANCE_WEIGHT_LIMIT_PER_MINUTE, wait)
            bucket.hold(wait)
