"""What a hostile or careless client found (issue 12), each answered as HTTP and the API's contract say."""

from __future__ import annotations

import http.client
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from tests.api.api_data import CURSORS, Dataset, assert_error
from tests.api.server import serve
from ticklake.api.cursor import SECRET_FILE, BadCursor, CursorSeal, load_cursor_secret
from ticklake.api.responses import ApiError
from ticklake.api.stream import Subscription

KRAKEN = {"exchange": "kraken", "symbol": "BTC/USD"}
BTC = {"exchange": "binance", "symbol": "BTC/USDT"}


# -- cursors ---------------------------------------------------------------------------------------------
async def test_a_cursor_minted_by_hand_is_a_400_not_a_500(api: httpx.AsyncClient, loaded: Dataset) -> None:
    # The probe's cursor: under the old constant key it decoded to year 294247 and a 500.
    response = await api.get("/v1/trades", params={**KRAKEN, "limit": 2, "cursor": "f_________8AAAAAAAAAAKCjwzb1U5BR"})
    assert "not made by this installation" in assert_error(response, 400, "cursor")


async def test_a_cursor_of_another_installation_is_refused(api: httpx.AsyncClient, loaded: Dataset) -> None:
    ours = (await api.get("/v1/trades", params={**KRAKEN, "limit": 2})).json()["next_cursor"]
    theirs = CursorSeal(b"another installation's key").encode("kraken", "BTC/USD", 1, 1)
    assert (await api.get("/v1/trades", params={**KRAKEN, "limit": 2, "cursor": ours})).status_code == 200
    assert_error(await api.get("/v1/trades", params={**KRAKEN, "limit": 2, "cursor": theirs}), 400, "cursor")


async def test_a_sealed_cursor_at_an_impossible_position_is_refused(api: httpx.AsyncClient, loaded: Dataset) -> None:
    for ts_us in (2**62, -1):  # (what a leaked key or a bug could seal)
        cursor = CURSORS.encode("kraken", "BTC/USD", ts_us, 5)
        assert_error(await api.get("/v1/trades", params={**KRAKEN, "cursor": cursor}), 400, "cursor")
    stream_cursor = CURSORS.encode_stream("kraken", "BTC/USD", 2**62, 1, 1)
    with pytest.raises(ApiError) as refused:
        Subscription({"channel": "trades", **KRAKEN, "after": stream_cursor}, CURSORS)
    assert refused.value.status == 400 and refused.value.parameter == "after"


def test_the_cursor_key_is_made_once_per_installation_and_kept(tmp_path: Path) -> None:
    first = load_cursor_secret("", tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / SECRET_FILE).st_mode) == 0o600
    cursor = first.encode("binance", "BTC/USDT", 1_700_000_000_000_000, 42)
    # After a restart the same key: cursors handed out before still work.
    assert load_cursor_secret("", tmp_path).decode("binance", "BTC/USDT", cursor) == (1_700_000_000_000_000, 42)
    # Another installation's cannot read it; a fleet sharing api.cursor_secret can read each other's.
    with pytest.raises(BadCursor):
        load_cursor_secret("", tmp_path / "elsewhere").decode("binance", "BTC/USDT", cursor)
    fleet = load_cursor_secret("a secret shared by the fleet", tmp_path / "a")
    fleet_cursor = fleet.encode("binance", "BTC/USDT", 5, 6)
    assert load_cursor_secret("a secret shared by the fleet", tmp_path / "b").decode(
        "binance", "BTC/USDT", fleet_cursor) == (5, 6)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        load_cursor_secret("short", tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / SECRET_FILE).write_text("not hex\n")
    with pytest.raises(ValueError, match="delete it to make a new one"):
        load_cursor_secret("", tmp_path / "broken")


# -- redirects, times, echoes -------------------------------------------------------------------------------
async def test_a_trailing_slash_redirects_without_the_clients_host(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/symbols/", headers={"Host": "evil.example"})
    assert response.status_code == 308
    assert response.headers["location"] == "/v1/symbols"  # relative: the client's own origin
    response = await api.get("/v1/ohlcv/", params=BTC, headers={"Host": "evil.example"})
    assert response.headers["location"] == "/v1/ohlcv?exchange=binance&symbol=BTC%2FUSDT"
    assert_error(await api.get("/v1/nothing/", headers={"Host": "evil.example"}), 404, None)


async def test_epoch_seconds_are_refused_with_a_hint_not_read_as_1970(api: httpx.AsyncClient, loaded: Dataset) -> None:
    message = assert_error(await api.get("/v1/ohlcv", params={**BTC, "start": "1765065600"}), 400, "start")
    assert "milliseconds are expected" in message and "1765065600000" in message
    assert_error(await api.get("/v1/trades", params={**BTC, "end": "0"}), 400, "end")
    assert (await api.get("/v1/ohlcv", params={**BTC, "start": "1765065600000"})).status_code == 200


async def test_an_error_repeats_only_the_start_of_a_huge_input(api: httpx.AsyncClient) -> None:
    for params in ({**BTC, "symbol": "X" * 60_000}, {**BTC, "timeframe": "y" * 60_000},
                   {**BTC, "start": "9" * 60_000}, {**BTC, "z" * 60_000: "1"}):
        response = await api.get("/v1/ohlcv", params=params)
        assert response.status_code == 400
        assert len(response.content) < 1000, response.text[:200]
        assert "characters)" in response.text


# -- oversized requests, on a real server ---------------------------------------------------------------------
@pytest.fixture
def server(app: Starlette) -> Iterator[tuple[str, int]]:
    url, stop = serve(app)
    host, port = url.removeprefix("http://").split(":")
    yield host, int(port)
    stop()


def _get(server: tuple[str, int], path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_huge_url_gets_414_and_huge_headers_431_not_a_reset(server: tuple[str, int], loaded: Dataset) -> None:
    status, body = _get(server, "/v1/symbols?a=" + "x" * 1_000_000)
    assert status == 414 and b"request line is longer" in body
    status, body = _get(server, "/v1/symbols", {"X-Padding": "p" * 200_000})
    assert status == 431 and b"headers are larger" in body
    # Malformed (not too large) stays a 400; and the server serves the next clients as before.
    connection = http.client.HTTPConnection(*server, timeout=10)
    connection.sock = None
    connection.connect()
    assert connection.sock is not None
    connection.sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    assert connection.sock.recv(100).startswith(b"HTTP/1.1 400")
    connection.close()
    assert _get(server, "/v1/symbols")[0] == 200


# -- credentials and start-up errors ---------------------------------------------------------------------------
def test_config_masks_every_credential(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    from ticklake.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKLAKE_WAREHOUSE_URL", "http://u:pw123@h:8123")
    monkeypatch.setenv("TICKLAKE_BUS__KAFKA__CONFIG", '{"sasl.password": "kpw999", "sasl.username": "bob"}')
    monkeypatch.setenv("TICKLAKE_LAKE__S3_SECRET_ACCESS_KEY", "s3secret1")
    monkeypatch.setenv("TICKLAKE_LAKE__URI", "https://catalog.example/api?token=tok777")
    monkeypatch.setenv("TICKLAKE_API__CURSOR_SECRET", "cursor-secret-4242")
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    for secret in ("pw123", "kpw999", "s3secret1", "tok777", "cursor-secret-4242"):
        assert secret not in printed
    # What a reader needs to find a mistake stays.
    assert "http://u:***@h:8123" in printed and '"sasl.username": "bob"' in printed and "catalog.example" in printed


def test_an_unreachable_warehouse_server_is_one_line_naming_what_to_check(tmp_path: Path) -> None:
    from tests.support.processes import free_port

    env = {**os.environ, "TICKLAKE_WAREHOUSE_URL": f"http://reader:pw123@127.0.0.1:{free_port()}",
           "TICKLAKE_API__PORT": str(free_port()), "TICKLAKE_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "ticklake.cli", "api"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert "pw123" not in done.stdout + done.stderr
    assert any(line.startswith("ticklake: cannot use the warehouse at http://reader:***@127.0.0.1:")
               and "Connection refused" in line and "warehouse_url" in line for line in lines), lines
    assert "Traceback" not in done.stderr and len(lines) <= 3, lines
