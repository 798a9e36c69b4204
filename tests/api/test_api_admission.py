"""Reads are admitted a few at a time on connections of their own: a saturated API answers 503 with
Retry-After instead of queueing without end, a query over its limits is stopped and answered 503
naming the limit, and /health answers while every read slot is taken."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from tests.api.api_data import CONFIGURED, Dataset, api_settings
from tests.api.server import serve
from ticklake.api import create_app
from ticklake.ops import metrics
from ticklake.warehouse.client import open_client
from ticklake.warehouse.pool import ClientPool, QueryLimitError, read_limits
from ticklake.warehouse.reader import WarehouseReader

MakeApi = Callable[[Starlette], httpx.AsyncClient]
OHLCV = "/v1/ohlcv?exchange=binance&symbol=BTC/USDT&timeframe=1m&limit=5"


def refused(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("ticklake_api_reads_refused_total", {"reason": reason}) or 0.0


@pytest.fixture
def pool(warehouse: Client, warehouse_url: str) -> Iterator[ClientPool]:
    """Two reading connections beside the test's own (the writer's), with a 0.5 s time limit."""
    opener = lambda: open_client(warehouse_url, "ticklake_test", settings=read_limits(0.5, 100_000_000))  # noqa: E731
    readers = ClientPool.open(2, opener)
    yield readers
    readers.close()


class HeldReader(WarehouseReader):
    """A reader whose candle reads wait until released: a read slot held as long as the test wants."""

    def __init__(self, client: ClientPool) -> None:
        super().__init__(client)
        self.entered = threading.Event()
        self.release = threading.Event()

    def ohlcv_rows(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.release.wait(10)
        return super().ohlcv_rows(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_request_finding_every_read_slot_taken_is_answered_503_with_retry_after(
        pool: ClientPool, loaded: Dataset, make_api: MakeApi) -> None:
    settings = api_settings()
    settings.api = settings.api.model_copy(update={"max_concurrent_reads": 1, "read_wait_ms": 200, "retry_after_s": 3,
                                                   "read_duty_cycle": 1.0})
    reader = HeldReader(pool)
    app = create_app(reader, settings, configured_markets=CONFIGURED)
    before = refused("saturated")
    async with make_api(app) as api:
        held = asyncio.create_task(api.get(OHLCV))
        await asyncio.to_thread(reader.entered.wait, 5)
        busy = await api.get(OHLCV)
        health = await api.get("/health")  # never admitted, never refused
        reader.release.set()
        first = await held
        after = await api.get(OHLCV)  # the slot is free again
    assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
    assert "busy" in busy.json()["error"]["message"]
    assert refused("saturated") == before + 1
    assert health.status_code == 200 and health.json()["components"]["warehouse"]["status"] == "ok"
    assert first.status_code == 200 and after.status_code == 200
    assert first.json()["candles"] == after.json()["candles"] != []


async def test_a_waiting_request_is_served_when_a_slot_frees_in_time(
        pool: ClientPool, loaded: Dataset, make_api: MakeApi) -> None:
    settings = api_settings()
    settings.api = settings.api.model_copy(update={"max_concurrent_reads": 1, "read_wait_ms": 5000,
                                                   "read_duty_cycle": 1.0})
    reader = HeldReader(pool)
    app = create_app(reader, settings, configured_markets=CONFIGURED)
    async with make_api(app) as api:
        held = asyncio.create_task(api.get(OHLCV))
        await asyncio.to_thread(reader.entered.wait, 5)
        waiting = asyncio.create_task(api.get(OHLCV))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        reader.release.set()
        assert (await held).status_code == 200
        assert (await waiting).status_code == 200


async def test_a_read_slot_others_queue_for_rests_in_proportion_to_its_read(
        pool: ClientPool, loaded: Dataset, make_api: MakeApi) -> None:
    """With a duty cycle of 1/2, a read of 0.3 s that another request queued behind keeps its slot
    another 0.3 s: readers take at most half of a core per slot, however many queue. A lone client
    reading page after page never waits for a rest."""
    settings = api_settings()
    settings.api = settings.api.model_copy(update={"max_concurrent_reads": 1, "read_wait_ms": 100,
                                                   "read_duty_cycle": 0.5})
    reader = HeldReader(pool)
    async with make_api(create_app(reader, settings, configured_markets=CONFIGURED)) as api:
        reader.release.set()
        for _ in range(5):  # alone: back to back, no rest
            assert (await api.get(OHLCV)).status_code == 200
        reader.release.clear()
        reader.entered.clear()
        threading.Timer(0.3, reader.release.set).start()  # the next read takes 0.3 s
        first = asyncio.create_task(api.get(OHLCV))
        await asyncio.to_thread(reader.entered.wait, 5)
        queued = asyncio.create_task(api.get(OHLCV))  # waits 0.1 s: the read, then its rest, are longer
        assert (await first).status_code == 200
        assert (await queued).status_code == 503
        await asyncio.sleep(0.4)  # the rest is over
        assert (await api.get(OHLCV)).status_code == 200


async def test_a_query_over_its_time_limit_is_stopped_and_answered_503_naming_it(
        pool: ClientPool, make_api: MakeApi) -> None:
    class SlowReader(WarehouseReader):
        def markets(self):  # type: ignore[no-untyped-def]
            # As long as a scan of a huge table: well over the pool's 0.5 s limit.
            self.client.query("SELECT count() FROM numbers(20000000000) WHERE sipHash64(number) % 7 = 1")
            return super().markets()

    before = refused("time")
    async with make_api(create_app(SlowReader(pool), api_settings(), configured_markets=CONFIGURED)) as api:
        response = await api.get("/v1/symbols")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "query_timeout_s" in response.json()["error"]["message"]
    assert refused("time") == before + 1


def test_reading_connections_cannot_write(pool: ClientPool) -> None:
    with pytest.raises(Exception, match="readonly"):
        pool.query("CREATE TABLE ticklake_test.nope (a UInt8) ENGINE = Memory")


def test_a_read_runs_beside_a_long_one_instead_of_behind_it(pool: ClientPool) -> None:
    """Two connections, two queries at once: what lets the writer's own connection never wait for the
    API's (chdb serves every handle of its engine side by side)."""
    done = threading.Event()

    def long_read() -> None:
        with contextlib.suppress(QueryLimitError):
            pool.query("SELECT count() FROM numbers(20000000000) WHERE sipHash64(number) % 7 = 1")
        done.set()

    threading.Thread(target=long_read, daemon=True).start()
    time.sleep(0.1)  # the long read is under way (it is stopped at 0.5 s)
    assert pool.query("SELECT 1").result_rows == [(1,)]
    assert not done.is_set()  # answered while the long read still ran
    done.wait(5)


def test_the_python_client_waits_as_told_by_a_busy_server_then_gets_its_answer(
        pool: ClientPool, loaded: Dataset) -> None:
    from ticklake.client import TicklakeAPIError, TicklakeClient

    settings = api_settings()
    settings.api = settings.api.model_copy(update={"max_concurrent_reads": 1, "read_wait_ms": 50, "retry_after_s": 1,
                                                   "read_duty_cycle": 1.0})
    reader = HeldReader(pool)
    url, stop = serve(create_app(reader, settings, configured_markets=CONFIGURED))
    try:
        holder = threading.Thread(target=lambda: httpx.get(url + OHLCV, timeout=10), daemon=True)
        holder.start()
        assert reader.entered.wait(5)
        with TicklakeClient(url, timeout=10, busy_retries=0) as impatient, pytest.raises(TicklakeAPIError) as refused_:
            impatient.ohlcv("binance", "BTC/USDT", "1m", limit=5)
        assert refused_.value.status == 503
        threading.Timer(0.5, reader.release.set).start()  # the slot frees while the client waits
        started = time.monotonic()
        with TicklakeClient(url, timeout=10) as patient:
            candles = patient.ohlcv("binance", "BTC/USDT", "1m", limit=5)
        assert len(candles) == 5 and time.monotonic() - started >= 0.9  # it waited the second it was told
        holder.join(5)
    finally:
        reader.release.set()
        stop()
