"""GET /health: the worst component decides; 503 only when down; a failing check never fails /health."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette

from tests.api.api_data import api_settings
from ticklake.api import HealthSources, create_app
from ticklake.api.health import HealthEndpoint
from ticklake.warehouse.reader import WarehouseReader

MakeApi = Callable[[Starlette], httpx.AsyncClient]


class UnreachableWarehouse(WarehouseReader):
    """A reader whose warehouse is gone: the one case the real embedded warehouse cannot show."""

    def __init__(self) -> None:
        pass

    def ping(self) -> bool:
        raise ConnectionError("connection refused")


async def health(make_api: MakeApi, reader: WarehouseReader, sources: HealthSources) -> httpx.Response:
    async with make_api(create_app(reader, api_settings(), health=sources)) as client:
        return await client.get("/health")


async def test_all_ok(warehouse: Client, make_api: MakeApi) -> None:
    response = await health(make_api, WarehouseReader(warehouse),
                            {"feeds": lambda: {"status": "ok", "connected": 3}})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["warehouse"]["status"] == "ok"
    assert body["components"]["warehouse"]["ping_ms"] >= 0
    assert body["components"]["feeds"] == {"status": "ok", "connected": 3}


async def test_without_sources_only_the_warehouse(api: httpx.AsyncClient) -> None:
    body = (await api.get("/health")).json()
    assert body["status"] == "ok" and list(body["components"]) == ["warehouse"]


async def test_a_degraded_component_degrades_the_whole_with_200(warehouse: Client, make_api: MakeApi) -> None:
    response = await health(make_api, WarehouseReader(warehouse), {
        "feeds": lambda: {"status": "degraded", "down_exchanges": ["kraken"]},
        "bus": lambda: {"status": "ok"},
    })
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["components"]["feeds"]["down_exchanges"] == ["kraken"]


def _raises() -> Mapping[str, Any]:
    raise RuntimeError("ingest task died")


@pytest.mark.parametrize(("check", "error_words"), [
    (_raises, ["RuntimeError", "ingest task died"]),
    (lambda: {"status": "fine"}, ["'fine'"]),
    (lambda: {"lag": 3}, ["None"]),
    (lambda: None, ["None"]),
])
async def test_a_broken_component_shows_as_down_with_503(warehouse: Client, make_api: MakeApi,
                                                         check: Callable[[], Mapping[str, Any]],
                                                         error_words: list[str]) -> None:
    response = await health(make_api, WarehouseReader(warehouse), {"ingest": check, "bus": lambda: {"status": "ok"}})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["components"]["ingest"]["status"] == "down"
    for word in error_words:
        assert word in body["components"]["ingest"]["error"]
    assert body["components"]["warehouse"]["status"] == "ok"
    assert body["components"]["bus"] == {"status": "ok"}


async def test_warehouse_down_is_503(make_api: MakeApi) -> None:
    response = await health(make_api, UnreachableWarehouse(), {"feeds": lambda: {"status": "ok"}})
    assert response.status_code == 503
    assert response.json() == {"status": "down", "components": {
        "warehouse": {"status": "down", "error": "ConnectionError: connection refused"},
        "feeds": {"status": "ok"},
    }}


async def test_a_hanging_warehouse_is_down_after_the_timeout() -> None:
    release = threading.Event()

    class Hanging(UnreachableWarehouse):
        def ping(self) -> bool:
            release.wait(5)
            return True

    try:
        result = await HealthEndpoint(Hanging(), {}, ping_timeout_s=0.05).warehouse()
    finally:
        release.set()
    assert result == {"status": "down", "error": "no answer to a ping within 0.05 s"}


def test_the_warehouse_component_name_is_reserved(warehouse: Client) -> None:
    with pytest.raises(ValueError, match="built in"):
        create_app(WarehouseReader(warehouse), api_settings(), health={"warehouse": lambda: {"status": "ok"}})
