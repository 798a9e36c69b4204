"""API keys, rate limits and CORS, against a real uvicorn on loopback with real clients (httpx, websockets).

What a user depends on: beyond loopback the API refuses to start without a key (or an explicit
``api.auth = "none"``, which is logged); a request without a key, with a wrong one or a revoked one is
refused (401) while /health, /metrics and the docs stay open; a key revoked while the server runs is
refused within about a second, without a restart, and two keys work at once (rotation); a key over
its rate gets 429 with Retry-After and is served again after waiting; a browser page on an allowed
origin may call the API (CORS), one on another origin may not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.api.api_data import CONFIGURED, api_settings
from tests.api.server import serve
from tests.support.openapi import _resolve, conforms
from tests.support.processes import free_port, until_answering
from ticklake.api import create_app
from ticklake.api.auth import AuthSetupError, key_store_for
from ticklake.api.keys import KeyFileError, KeyStore
from ticklake.api.live import LiveHub
from ticklake.cli import main
from ticklake.client import TicklakeAPIError, TicklakeClient
from ticklake.ops import metrics
from ticklake.platform import Platform
from ticklake.settings import ApiSettings, Settings
from ticklake.warehouse.reader import WarehouseReader

pytestmark = pytest.mark.integration

SYMBOLS = "/v1/symbols"


def refused(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("ticklake_api_auth_refused_total", {"reason": reason}) or 0.0


def assert_refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message"}
    assert words in body["error"]["message"], body


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "api_keys.json")


@pytest.fixture
def served(warehouse: Client, store: KeyStore) -> Iterator[str]:
    """The API, keys required, on a real server on loopback."""
    settings = api_settings()
    settings.api = settings.api.model_copy(update={"cors_origins": ["https://dash.example.com"]})
    url, stop = serve(create_app(WarehouseReader(warehouse), settings, configured_markets=CONFIGURED, keys=store))
    yield url
    stop()


def test_no_key_wrong_key_revoked_key_and_two_keys_at_once(served: str, store: KeyStore, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    old, old_stored = store.create("old", 100, 100)
    new, _ = store.create("new", 100, 100)
    before = {reason: refused(reason) for reason in ("missing", "invalid", "revoked")}
    with httpx.Client(base_url=served, timeout=10) as http:
        missing = http.get(SYMBOLS)
        assert_refused(missing, 401, "needs an API key")
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        # A wrong secret for a real id, a key of another shape, a key under another scheme.
        assert_refused(http.get(SYMBOLS, headers={"X-API-Key": old[:-4] + "AAAA"}), 401, "not valid")
        assert_refused(http.get(SYMBOLS, headers={"Authorization": "Bearer nonsense"}), 401, "not valid")
        assert_refused(http.get(SYMBOLS, headers={"Authorization": f"Basic {old}"}), 401, "needs an API key")
        # Rotation: both keys work, as a bearer token or as X-API-Key.
        assert http.get(SYMBOLS, headers={"Authorization": f"Bearer {old}"}).status_code == 200
        assert http.get(SYMBOLS, headers={"X-API-Key": new}).status_code == 200
        # What a load balancer, a scrape or a first visit need stays open.
        for path in ("/health", "/metrics", "/openapi.json", "/docs", "/", "/static/app.js"):
            assert http.get(path).status_code == 200, path
        assert http.get("/nowhere").status_code == 401  # only the listed paths are open

        # The old key is revoked through the CLI while the server runs: refused within about a second.
        monkeypatch.setenv("TICKLAKE_API__KEYS_FILE", str(store.path))
        monkeypatch.setenv("TICKLAKE_DATA_DIR", str(tmp_path))
        assert main(["keys", "revoke", old_stored.id]) == 0
        assert old_stored.id in capsys.readouterr().out
        deadline = time.monotonic() + 3
        while (answer := http.get(SYMBOLS, headers={"X-API-Key": old})).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key was still accepted after 3 s"
            time.sleep(0.1)
        assert_refused(answer, 401, f"{old_stored.id} was revoked")
        assert http.get(SYMBOLS, headers={"X-API-Key": new}).status_code == 200
        assert refused("missing") - before["missing"] == 3  # with /nowhere
        assert refused("invalid") - before["invalid"] == 2
        assert refused("revoked") - before["revoked"] == 1
        # A key created meanwhile by another process works as soon as the server re-read the file.
        assert main(["keys", "create", "--name", "newest"]) == 0
        newest = capsys.readouterr().out.strip()
        deadline = time.monotonic() + 3
        while http.get(SYMBOLS, headers={"X-API-Key": newest}).status_code != 200:
            assert time.monotonic() < deadline, "the new key was still refused after 3 s"
            time.sleep(0.1)
        # A file broken by hand: the keys read before still hold (and the error is logged).
        store.path.write_text("{not json")
        time.sleep(1.2)
        assert http.get(SYMBOLS, headers={"X-API-Key": new}).status_code == 200
        assert_refused(http.get(SYMBOLS, headers={"X-API-Key": old}), 401, "revoked")


def test_a_key_over_its_rate_gets_429_with_retry_after_then_is_served_again(served: str, store: KeyStore) -> None:
    key, _ = store.create("slow", 2, 2)
    other, _ = store.create("other", 2, 2)
    with httpx.Client(base_url=served, timeout=10, headers={"X-API-Key": key}) as http:
        answers = [http.get(SYMBOLS) for _ in range(3)]
        assert [a.status_code for a in answers[:2]] == [200, 200]
        limited = answers[2]
        assert_refused(limited, 429, "rate limit")
        wait = int(limited.headers["Retry-After"])
        assert wait >= 1
        # Each key has its own bucket.
        assert http.get(SYMBOLS, headers={"X-API-Key": other}).status_code == 200
        time.sleep(wait)
        assert http.get(SYMBOLS).status_code == 200
    # The Python client waits as told and gets its answer.
    with TicklakeClient(served, api_key=key, timeout=10) as client:
        for _ in range(4):
            assert len(client.symbols()) == len(CONFIGURED)


def test_the_python_client_sends_its_key_and_names_a_refusal(served: str, store: KeyStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = store.create("client", 100, 100)
    monkeypatch.setenv("TICKLAKE_API_KEY", key)
    with TicklakeClient(served, timeout=10) as client:
        assert len(client.symbols()) == len(CONFIGURED)
    with TicklakeClient(served, api_key="tlk_00000000_wrong", timeout=10) as client, \
            pytest.raises(TicklakeAPIError) as error:
        client.symbols()
    assert error.value.status == 401


async def test_the_stream_needs_a_key_which_a_browser_gives_as_a_query_parameter(warehouse: Client,
                                                                                store: KeyStore) -> None:
    key, _ = store.create("stream", 100, 100)
    live = LiveHub(WarehouseReader(warehouse))
    url, stop = serve(create_app(WarehouseReader(warehouse), api_settings(), configured_markets=CONFIGURED,
                                 live=live, keys=store))
    ws = "ws" + url.removeprefix("http") + "/v1/stream"
    subscribe = {"op": "subscribe", "channel": "trades", "exchange": "binance", "symbol": "BTC/USDT"}
    try:
        with pytest.raises(InvalidStatus) as no_key:
            async with connect(ws):
                pass
        assert no_key.value.response.status_code == 401
        assert b"needs an API key" in (no_key.value.response.body or b"")
        with pytest.raises(InvalidStatus) as wrong:
            async with connect(ws + "?api_key=tlk_00000000_wrong"):
                pass
        assert wrong.value.response.status_code == 401
        for target, headers in ((f"{ws}?api_key={key}", {}), (ws, {"X-API-Key": key})):
            async with connect(target, additional_headers=headers) as connection:
                await connection.send(json.dumps(subscribe))
                assert json.loads(await asyncio.wait_for(connection.recv(), 10))["type"] == "subscribed"
        # Server-Sent Events take the key as a parameter beside the subscription's own.
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            params = {k: v for k, v in subscribe.items() if k != "op"}
            assert (await http.get("/v1/stream", params=params)).status_code == 401
            async with http.stream("GET", "/v1/stream", params={**params, "api_key": key}) as events:
                assert events.status_code == 200
                first = await anext(events.aiter_lines())
                assert first == "event: subscribed"
        # The Python client says why it cannot follow, instead of reconnecting forever.
        with TicklakeClient(url, api_key="tlk_00000000_wrong") as client:
            with pytest.raises(TicklakeAPIError) as error:
                await anext(client.stream("trades", "binance", "BTC/USDT"))
            assert error.value.status == 401
    finally:
        await live.stop()
        stop()


def test_the_document_declares_the_keys_and_the_refusals_conform_to_it(served: str, store: KeyStore) -> None:
    key, _ = store.create("doc", 1, 1)
    with httpx.Client(base_url=served, timeout=10) as http:
        document = http.get("/openapi.json").json()
        schemes = document["components"]["securitySchemes"]
        assert {s.get("scheme") or s["name"] for s in schemes.values()} == {"bearer", "X-API-Key", "api_key"}
        for path, operations in document["paths"].items():
            operation = operations["get"]
            if path.startswith("/v1/"):
                assert {"bearer": []} in operation["security"] and {"401", "429"} <= set(operation["responses"])
            else:
                assert "security" not in operation, path
        answers = {"401": http.get(SYMBOLS), "429": None}
        http.get(SYMBOLS, headers={"X-API-Key": key})
        answers["429"] = http.get(SYMBOLS, headers={"X-API-Key": key})
    for status, answer in answers.items():
        assert answer is not None and str(answer.status_code) == status
        documented = _resolve(document, document["paths"][SYMBOLS]["get"]["responses"][status])
        conforms(document, documented["content"]["application/json"]["schema"], answer.json())
        assert all(header in answer.headers for header in documented.get("headers", {}))  # case-insensitive


def test_cors_preflight_from_an_allowed_origin_and_from_another(served: str) -> None:
    asked = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"}
    with httpx.Client(base_url=served, timeout=10) as http:
        allowed = http.options(SYMBOLS, headers={"Origin": "https://dash.example.com", **asked})
        assert allowed.status_code == 200, allowed.text  # no key needed for a preflight
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        assert "GET" in allowed.headers["access-control-allow-methods"]
        other = http.options(SYMBOLS, headers={"Origin": "https://evil.example.org", **asked})
        assert "access-control-allow-origin" not in other.headers
        # The page can read a refusal (to ask for a key) and the headers it needs.
        refusal = http.get(SYMBOLS, headers={"Origin": "https://dash.example.com"})
        assert refusal.status_code == 401
        assert refusal.headers["access-control-allow-origin"] == "https://dash.example.com"
        assert "retry-after" in refusal.headers["access-control-expose-headers"].lower()


def test_no_cors_headers_unless_origins_are_listed(warehouse: Client) -> None:
    url, stop = serve(create_app(WarehouseReader(warehouse), api_settings(), configured_markets=CONFIGURED))
    try:
        answer = httpx.get(url + SYMBOLS, headers={"Origin": "https://dash.example.com"})
        assert answer.status_code == 200  # on loopback, open as before
        assert "access-control-allow-origin" not in answer.headers
    finally:
        stop()


def settings_at(host: str, tmp_path: Path, **api: object) -> Settings:
    return Settings(data_dir=tmp_path, api=ApiSettings(host=host, port=free_port(), **api))


def test_beyond_loopback_the_api_refuses_to_start_without_a_key(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert key_store_for(settings_at("127.0.0.1", tmp_path)) is None  # loopback: open, as before
    assert key_store_for(settings_at("::1", tmp_path)) is None
    for host, auth in (("0.0.0.0", "auto"), ("192.0.2.7", "auto"), ("127.0.0.1", "keys")):
        with pytest.raises(AuthSetupError, match="ticklake keys create"):
            Platform(settings_at(host, tmp_path, auth=auth), roles=frozenset({"api"}))
    # Through the command line: one line saying what to do, no traceback, a failing status.
    monkeypatch.setenv("TICKLAKE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TICKLAKE_API__HOST", "0.0.0.0")
    assert main(["api"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ticklake: the API requires API keys") and "Traceback" not in err
    assert 'api.auth = "none"' in err and len(err.strip().splitlines()) == 1
    # A key file that cannot be read says so, at start and to `ticklake keys`, and is left as it is.
    (tmp_path / "api_keys.json").write_text("[]")
    with pytest.raises(KeyFileError, match=r"api_keys\.json cannot be read"):
        key_store_for(settings_at("0.0.0.0", tmp_path))
    assert main(["keys", "create"]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert (tmp_path / "api_keys.json").read_text() == "[]"
    (tmp_path / "api_keys.json").unlink()
    # A revoked key is no key.
    key_store = KeyStore(tmp_path / "api_keys.json")
    _, stored = key_store.create("gone", 1, 1)
    key_store.revoke(stored.id)
    with pytest.raises(AuthSetupError):
        key_store_for(settings_at("0.0.0.0", tmp_path))


def test_auth_none_beyond_loopback_is_allowed_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        platform = Platform(settings_at("0.0.0.0", tmp_path, auth="none"), roles=frozenset({"api"}))
    assert platform.api_keys is None
    assert any(r.levelno == logging.WARNING and "answers anyone" in r.getMessage() for r in caplog.records)


async def test_ticklake_api_with_keys_serves_only_with_a_key(warehouse_url: str, tmp_path: Path,
                                                             warehouse: Client) -> None:
    key, _ = KeyStore(tmp_path / "api_keys.json").create("platform", 100, 100)
    settings = Settings(warehouse_url=warehouse_url, database="ticklake_test", data_dir=tmp_path,
                        api=ApiSettings(host="127.0.0.1", port=free_port(), auth="keys"))
    platform = Platform(settings, roles=frozenset({"api"}))
    await platform.start()
    try:
        await until_answering(settings.api.port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api.port}", timeout=10) as http:
            assert (await http.get(SYMBOLS)).status_code == 401
            assert (await http.get(SYMBOLS, headers={"Authorization": f"Bearer {key}"})).status_code == 200
    finally:
        await platform.stop()


def test_keys_command_creates_lists_and_revokes_and_stores_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TICKLAKE_DATA_DIR", str(tmp_path))
    assert main(["keys", "list"]) == 0
    assert "no API keys" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "dashboard", "--rate", "5", "--burst", "10"]) == 0
    created = capsys.readouterr()
    key = created.out.strip()
    assert key.startswith("tlk_") and len(key.splitlines()) == 1
    assert "cannot be shown again" in created.err
    key_id = key.split("_")[1]
    path = tmp_path / "api_keys.json"
    text = path.read_text()
    assert key not in text and key.split("_", 2)[2] not in text  # only its hash is kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "dashboard" in listed and "active" in listed and "5/s burst 10" in listed
    assert json.loads(text)["keys"][0]["sha256"] not in listed
    assert main(["keys", "revoke", key_id]) == 0
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    assert "revoked 20" in capsys.readouterr().out
    assert main(["keys", "revoke", "ffffffff"]) == 1
    assert "no API key with id" in capsys.readouterr().err
