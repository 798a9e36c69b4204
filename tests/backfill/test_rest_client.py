"""The shared REST client's manners, against httpx.MockTransport: weights, throttles, retries, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from ticklake.exchanges.rest import RateLimit, RestClient, RestError, TokenBucket
from ticklake.exchanges.rest.client import retry_after_s
from ticklake.ops.metrics import REGISTRY
from ticklake.settings import FeedSettings

pytestmark = pytest.mark.integration

Handler = Callable[[httpx.Request], httpx.Response]


def requests_metric(exchange: str, status: str) -> float:
    return REGISTRY.get_sample_value("ticklake_feed_rest_requests_total",
                                     {"exchange": exchange, "status": status}) or 0.0


def client_for(handler: Handler, **kwargs: object) -> RestClient:
    return RestClient(FeedSettings(rest_timeout_s=1.0), transport=httpx.MockTransport(handler),
                      backoff_initial_s=0.01, backoff_max_s=0.05, **kwargs)  # type: ignore[arg-type]


async def test_the_bucket_spaces_requests_by_weight() -> None:
    bucket = TokenBucket(RateLimit(burst=50, per_second=100))
    started = time.monotonic()
    for _ in range(4):  # 2 from the burst, then one per 0.25 s
        await bucket.take(25)
    assert 0.45 <= time.monotonic() - started < 0.8


async def test_hold_blocks_until_the_venue_allows_again() -> None:
    bucket = TokenBucket(RateLimit(burst=10, per_second=1000))
    bucket.hold(0.3)
    started = time.monotonic()
    await bucket.take(1)
    assert 0.28 <= time.monotonic() - started < 0.6


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert retry_after_s(httpx.Headers({"Retry-After": "7"})) == 7.0
    assert retry_after_s(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), now=1445412470) == 10.0
    assert retry_after_s(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_s(httpx.Headers()) is None


async def test_429_waits_retry_after_then_succeeds() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "1"}, json={"code": -1003, "msg": "Too much"}),
               httpx.Response(200, json=[])]
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return answers.pop(0)

    before = requests_metric("binance", "429"), requests_metric("binance", "200")
    client = client_for(handler, urls={"binance": "http://binance.test"})
    try:
        answer = await client.get("binance", "/api/v3/historicalTrades", {"symbol": "BTCUSDT"}, weight=25)
    finally:
        await client.aclose()
    assert answer.status == 200 and answer.body == b"[]"
    assert seen[1] - seen[0] >= 0.95  # Retry-After: 1
    assert (requests_metric("binance", "429"), requests_metric("binance", "200")) == (before[0] + 1, before[1] + 1)


async def test_418_ban_is_honoured_like_a_429() -> None:
    answers = [httpx.Response(418, headers={"Retry-After": "0.2"}), httpx.Response(200, json=[])]
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return answers.pop(0)

    client = client_for(handler)
    try:
        await client.get("binance", "/x", {})
    finally:
        await client.aclose()
    assert seen[1] - seen[0] >= 0.19


async def test_kraken_throttle_in_a_200_body_is_a_throttle() -> None:
    answers = [httpx.Response(200, json={"error": ["EGeneral:Too many requests"]}),
               httpx.Response(200, json={"error": [], "result": {"BTC/USD": [], "last": "1"}})]
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return answers.pop(0)

    before = requests_metric("kraken", "throttled")
    client = client_for(handler)
    try:
        answer = await client.get("kraken", "/0/public/Trades", {"pair": "BTC/USD"})
    finally:
        await client.aclose()
    assert b'"result"' in answer.body
    assert seen[1] - seen[0] >= 0.95  # no Retry-After from Kraken: at least a second
    assert requests_metric("kraken", "throttled") == before + 1


async def test_binance_weight_near_the_limit_pauses_until_the_next_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"X-MBX-USED-WEIGHT-1M": "5500"}, json=[])

    client = client_for(handler)
    try:
        await client.get("binance", "/api/v3/historicalTrades", {}, weight=25)
        bucket = client.bucket("binance")
        assert bucket._held_until - time.monotonic() > 0.4  # held: the next request waits for the minute
    finally:
        await client.aclose()


async def test_server_errors_are_retried_then_reported_retryable() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="unavailable")

    client = client_for(handler, max_attempts=3)
    try:
        with pytest.raises(RestError) as raised:
            await client.get("coinbase", "/products/BTC-USD/trades", {})
    finally:
        await client.aclose()
    assert calls == 3 and raised.value.retryable


async def test_a_refused_request_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404, json={"message": "NotFound"})

    client = client_for(handler)
    try:
        with pytest.raises(RestError) as raised:
            await client.get("coinbase", "/products/NOPE-USD/trades", {})
    finally:
        await client.aclose()
    assert calls == 1 and not raised.value.retryable and raised.value.status == 404
    assert "NotFound" in str(raised.value)


async def test_timeouts_and_connection_errors_are_retried_and_counted() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectTimeout("slow", request=request)
        if calls == 2:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=[])

    before = requests_metric("coinbase", "timeout"), requests_metric("coinbase", "error")
    client = client_for(handler)
    try:
        await client.get("coinbase", "/x", {})
    finally:
        await client.aclose()
    assert calls == 3
    assert (requests_metric("coinbase", "timeout"), requests_metric("coinbase", "error")) == (before[0] + 1,
                                                                                              before[1] + 1)


async def test_concurrent_requests_share_one_venue_budget() -> None:
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        return httpx.Response(200, json=[])

    client = client_for(handler, limits={"coinbase": RateLimit(burst=2, per_second=10)})
    try:
        await asyncio.gather(*(client.get("coinbase", "/x", {}) for _ in range(6)))
    finally:
        await client.aclose()
    assert stamps[-1] - stamps[0] >= 0.35  # 2 at once, then 4 more at 10 a second
