"""One HTTP client for every venue's public REST API, polite by construction.

* **Rate limiting**: a token bucket per venue, charged by request weight, so ticklake stays under the
  venue's limit instead of discovering it through errors. Each venue's ``RestPolicy`` (``POLICY`` in
  ``ticklake/venues/<name>/rest.py``) gives its base URL and its bucket: half of the venue's
  documented public limit (the other half is left for anything else sharing the IP).
* **Being told to wait**: HTTP 429, and Binance's 418 (an IP ban for ignoring 429s), carry
  ``Retry-After`` in seconds; the whole venue waits that long (or backs off when it is absent).
  A venue that says "slow down" otherwise says so through its policy: ``throttled`` (a 2xx body
  that is a throttle, treated like a 429: Kraken) and ``pause_s`` (a pause after an answer: Binance's
  used weight near the minute's limit).
* **Failing**: timeouts, connection errors and 5xx are retried with exponential backoff and full
  jitter, up to ``max_attempts``; then ``RestError(retryable=True)`` lets the caller retry later.
  Any other 4xx is the request's fault, not the moment's: ``RestError(retryable=False)`` at once.
* **Counting**: every answer in ``ticklake_feed_rest_requests_total{exchange, status}`` (the HTTP
  status, ``throttled`` for Kraken's throttle body, ``timeout`` / ``error`` without an answer).

The venues' sources are cited in their ``rest.py``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC

import httpx

from ticklake.exchanges import registry
from ticklake.ops.metrics import FEED_REST_REQUESTS
from ticklake.settings import FeedSettings

log = logging.getLogger("ticklake.feeds.rest")

@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``burst`` weight at most, refilled at ``per_second``."""

    burst: float
    per_second: float


def _never(body: bytes) -> bool:
    return False


def _no_pause(headers: httpx.Headers) -> float | None:
    return None


@dataclass(frozen=True)
class RestPolicy:
    """How one venue's public REST API is used (``POLICY`` in its folder's ``rest.py``)."""

    base_url: str  # the venue's public REST API (``VenueSettings.rest_url`` overrides it)
    limit: RateLimit
    # True when a 2xx body is really a throttle, to be waited out like a 429 (Kraken answers 200).
    throttled: Callable[[bytes], bool] = _never
    # Seconds to hold every request of the venue after a 2xx answer with these headers; None: go on.
    pause_s: Callable[[httpx.Headers], float | None] = _no_pause


def policy_for(exchange: str) -> RestPolicy:
    """The registered venue's REST policy; ValueError for an unknown venue."""
    policy: RestPolicy = registry.part(exchange, "rest").POLICY
    return policy


def default_url(exchange: str) -> str:
    """The venue's public REST base URL; "" for an unknown venue."""
    try:
        return policy_for(exchange).base_url
    except ValueError:
        return ""


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
        # Overrides only: a venue not named here is asked at its policy's base URL.
        self.urls = {k: v.rstrip("/") for k, v in (urls or {}).items() if v}
        self.limits = dict(limits or {})
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
            limit = self.limits.get(exchange) or self._policy(exchange).limit
            bucket = self._buckets[exchange] = TokenBucket(limit)
        return bucket

    def _policy(self, exchange: str) -> RestPolicy:
        try:
            return policy_for(exchange)
        except ValueError:  # not a registered venue (tests): one request a second, no URL
            return RestPolicy("", RateLimit(burst=1, per_second=1))

    def url(self, exchange: str, path: str) -> str:
        base = self.urls.get(exchange) or self._policy(exchange).base_url
        if not base:
            raise KeyError(exchange)
        return base + path

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
        if status == 200 and self._policy(exchange).throttled(answer.body[:200]):
            FEED_REST_REQUESTS.labels(exchange, "throttled").inc()
            after = retry_after_s(answer.headers)
            # Such venues give no wait; their public counters decay in seconds, so start at one.
            return after if after is not None else max(1.0, self._delay(throttled + 1))
        return None

    def _watch_weight(self, exchange: str, answer: RestResponse, bucket: TokenBucket) -> None:
        wait = self._policy(exchange).pause_s(answer.headers)
        if wait is not None:
            log.warning("%s REST: near the venue's rate limit; pausing %.0f s", exchange, wait)
            bucket.hold(wait)
