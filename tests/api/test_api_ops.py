"""/metrics, /openapi.json, /docs, and the error answers of paths, methods and failures."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route

from tests.api.api_data import MAX_LIMIT, Dataset, api_settings, assert_error
from tests.support.openapi import _resolve, conforms
from ticklake.api import create_app
from ticklake.api.export import MAX_FILE_ROWS
from ticklake.api.params import OHLCV_PARAMETERS, TRADES_PARAMETERS
from ticklake.model import EXCHANGES
from ticklake.ops.metrics import REGISTRY
from ticklake.warehouse.reader import TIMEFRAMES, CandleRow, WarehouseReader

MakeApi = Callable[[Starlette], httpx.AsyncClient]


def requests_counted(route: str, status: str) -> float:
    return REGISTRY.get_sample_value("ticklake_api_requests_total", {"route": route, "status": status}) or 0.0


# -- /metrics -------------------------------------------------------------------------------------
async def test_metrics_exposition_and_request_counters(api: httpx.AsyncClient, app: Starlette) -> None:
    before_ok = requests_counted("/v1/symbols", "200")
    before_bad = requests_counted("/v1/ohlcv", "400")
    before_unmatched = requests_counted("unmatched", "404")
    latency_before = REGISTRY.get_sample_value("ticklake_api_request_seconds_count", {"route": "/v1/symbols"}) or 0
    for _ in range(3):
        assert (await api.get("/v1/symbols")).status_code == 200
    assert (await api.get("/v1/ohlcv", params={"exchange": "binance"})).status_code == 400
    assert (await api.get("/v1/ohlcv/../secret?x=1")).status_code == 404
    assert requests_counted("/v1/symbols", "200") == before_ok + 3
    assert requests_counted("/v1/ohlcv", "400") == before_bad + 1
    assert requests_counted("unmatched", "404") == before_unmatched + 1
    assert REGISTRY.get_sample_value("ticklake_api_request_seconds_count", {"route": "/v1/symbols"}) == (
        latency_before + 3)

    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=1.0.0; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in families["ticklake_api_requests"].samples}
    assert samples[("ticklake_api_requests_total", (("route", "/v1/symbols"), ("status", "200")))] == before_ok + 3
    # Labels are route templates: no raw path or query string ever becomes a series (whatever other
    # tests in this process asked before).
    templates = {getattr(route, "path", None) for route in app.routes} | {"unmatched"}
    assert {"/v1/ohlcv", "/v1/trades", "/v1/symbols", "/health", "/metrics"} <= templates
    assert all(s.labels["route"] in templates
               for s in families["ticklake_api_requests"].samples if "route" in s.labels)


# -- errors outside the parameters -------------------------------------------------------------------
async def test_unknown_path_and_method_answer_in_the_error_shape(api: httpx.AsyncClient) -> None:
    assert "/docs" in assert_error(await api.get("/v2/ohlcv"), 404, None)
    response = await api.post("/v1/symbols")
    assert_error(response, 405, None)
    assert "GET" in response.headers["allow"]


class ExplodingReader(WarehouseReader):
    def __init__(self) -> None:
        pass

    def ohlcv_rows(self, *args: Any, **kwargs: Any) -> list[CandleRow]:
        raise RuntimeError("secret table layout in a stack trace")


async def test_unexpected_failure_is_a_500_without_details(make_api: MakeApi,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    before = requests_counted("/v1/ohlcv", "500")
    async with make_api(create_app(ExplodingReader(), api_settings())) as client:
        with caplog.at_level(logging.ERROR, logger="ticklake.api"):
            response = await client.get("/v1/ohlcv", params={"exchange": "binance", "symbol": "BTC/USDT"})
    assert response.status_code == 500
    assert response.json() == {"error": {"message": "internal error"}}
    assert "secret" not in response.text
    assert any("secret table layout" in (r.exc_text or "") or
               (r.exc_info and "secret table layout" in str(r.exc_info[1])) for r in caplog.records)
    assert requests_counted("/v1/ohlcv", "500") == before + 1


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_openapi_document_lists_every_route_and_parameter(api: httpx.AsyncClient, app: Starlette) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {r.path for r in app.routes if isinstance(r, Route)}
    for ref in _refs(document):
        assert _resolve(document, {"$ref": ref}) is not None

    def parameters(path: str) -> dict[str, dict[str, Any]]:
        listed = [_resolve(document, p) for p in document["paths"][path]["get"].get("parameters", [])]
        return {p["name"]: p for p in listed}

    ohlcv, trades = parameters("/v1/ohlcv"), parameters("/v1/trades")
    assert tuple(ohlcv) == OHLCV_PARAMETERS and tuple(trades) == TRADES_PARAMETERS
    assert ohlcv["exchange"]["required"] and ohlcv["symbol"]["required"]
    assert ohlcv["exchange"]["schema"]["enum"] == list(EXCHANGES)
    assert ohlcv["timeframe"]["schema"] == {"type": "string", "enum": list(TIMEFRAMES), "default": "1m"}
    # (The maximum is a file's: a JSON page's, api.max_limit, is in the description; api/export.py.)
    assert ohlcv["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_FILE_ROWS, "default": 500}
    assert str(MAX_LIMIT) in ohlcv["limit"]["description"] and str(MAX_LIMIT) in trades["limit"]["description"]
    assert trades["limit"]["schema"]["default"] == 1000
    assert {o["format"] for o in ohlcv["start"]["schema"]["oneOf"] if "format" in o} == {"date-time"}
    for path, operations in document["paths"].items():
        for status, answer in operations["get"]["responses"].items():
            if status in {"400", "404", "500"}:
                schema = _resolve(document, answer)["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)


async def test_responses_conform_to_the_document(api: httpx.AsyncClient, loaded: Dataset) -> None:
    document = (await api.get("/openapi.json")).json()

    async def check(path: str, params: dict[str, str], status: str) -> None:
        response = await api.get(path, params=params)
        assert str(response.status_code) == status
        answer = _resolve(document, document["paths"][path]["get"]["responses"][status])
        conforms(document, answer["content"]["application/json"]["schema"], response.json())

    btc = {"exchange": "binance", "symbol": "BTC/USDT"}
    await check("/v1/ohlcv", {**btc, "timeframe": "1h"}, "200")
    await check("/v1/trades", {**btc, "limit": "50"}, "200")
    await check("/v1/trades", {"exchange": "kraken", "symbol": "BTC/USD"}, "200")
    await check("/v1/symbols", {}, "200")
    await check("/health", {}, "200")
    await check("/v1/ohlcv", {**btc, "limit": "0"}, "400")
    await check("/v1/trades", {"exchange": "binance", "symbol": "NOPE/USDT"}, "404")


# -- /docs ------------------------------------------------------------------------------------------
async def test_docs_page_is_self_contained_html(api: httpx.AsyncClient) -> None:
    response = await api.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.startswith("<!doctype html>")
    for path in ("/v1/ohlcv", "/v1/trades", "/v1/symbols", "/health", "/metrics", "/openapi.json"):
        assert f"<code>{path}</code>" in page
    for name in {*OHLCV_PARAMETERS, *TRADES_PARAMETERS}:
        assert f"<code>{name}</code>" in page
    assert "1m | 5m | 15m | 30m | 1h | 1d" in page and "binance | kraken | coinbase" in page
    # Nothing fetched from elsewhere: there may be no internet where ticklake runs.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page


def test_configured_markets_must_be_well_formed(warehouse: Client) -> None:
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        create_app(WarehouseReader(warehouse), api_settings(), configured_markets=[("binance", "BTCUSDT")])
    with pytest.raises(ValueError, match="exchange"):
        create_app(WarehouseReader(warehouse), api_settings(), configured_markets=[("nyse", "BTC/USD")])
