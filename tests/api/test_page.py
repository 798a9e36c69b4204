"""The live page (``GET /``) in a real browser: Debian's Chromium, headless, driven by its
ChromeDriver (both installed by scripts/test), against ``ticklake up --simulate`` on loopback.

The page's candles are read out of the page and compared with ``/v1/ohlcv``; a live update must
arrive within 2 s; scrolling back loads older candles; switching market and timeframe loads theirs.
A screenshot is saved (to ``TICKLAKE_SCREENSHOT`` when set: the README's picture).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import REPO, env_for, running, wait_for
from ticklake.bench.stages import synthetic_trades
from ticklake.settings import Settings
from ticklake.warehouse import migrate
from ticklake.warehouse.client import open_client
from ticklake.warehouse.writer import WarehouseWriter

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
HISTORY_CANDLES = 700  # one-minute candles of SYM0/USDT stored before the start: more than a page (500)

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("Chromium and ChromeDriver are missing: scripts/test installs them (apt)")
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Headless, and nothing reaching for the network: this machine has none beyond loopback.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,720"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def store_history(data_dir: Path) -> None:
    """Hours of one-minute candles in a market the simulator does not trade, before the platform starts.
    In a process of its own: this one may hold another embedded warehouse open (the session's), and chdb
    opens one path per process (stack.md)."""
    done = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from tests.api.test_page "
                           "import write_history; write_history(Path(sys.argv[1]))", str(data_dir)],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
                                         "TZ": "UTC"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def write_history(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    client = open_client(settings.resolved_warehouse_url, settings.database)
    try:
        migrate.upgrade(client)
        # Two trades a minute, from a whole minute, ending an hour ago.
        start_us = (int(time.time()) // 60 - HISTORY_CANDLES - 60) * 60_000_000
        frames, trades = synthetic_trades(HISTORY_CANDLES * 2, markets=1, step_us=30_000_000, start_us=start_us)
        WarehouseWriter(client, settings.validation).write(frames, trades)
    finally:
        client.close()


def held(driver: Any) -> list[dict[str, Any]]:
    candles: list[dict[str, Any]] = driver.execute_script("return window.ticklake.candles()")
    return candles


def served(base: str, exchange: str, symbol: str, timeframe: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{base}/v1/ohlcv", params={"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                                                 "limit": 5000}, timeout=30).json()
    return {c["time"]: c for c in body["candles"]}


def until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_same_candles(page: list[dict[str, Any]], rest: dict[str, dict[str, Any]]) -> None:
    """Every closed candle the page holds is the API's; the API has no closed candle the page lacks."""
    newest = max(c["time"] for c in page)
    for candle in page:
        expected = rest.get(candle["time"])
        assert expected is not None, candle
        fields = ("open", "high", "low", "close", "volume", "trades")
        if candle["closed"]:
            assert {k: candle[k] for k in fields} == {k: expected[k] for k in fields}, candle["time"]
    oldest = min(c["time"] for c in page)
    assert {t for t in rest if oldest <= t < newest} <= {c["time"] for c in page}


def test_the_page_shows_the_warehouse_candles_live(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    data_dir = tmp_path / "data"
    store_history(data_dir)
    env = env_for(data_dir, TICKLAKE_VENUES__BINANCE__SYMBOLS='["BTC/USDT"]',
                  TICKLAKE_VENUES__KRAKEN__SYMBOLS='["BTC/USD"]', TICKLAKE_VENUES__COINBASE__SYMBOLS='["ETH/USD"]',
                  TICKLAKE_SIMULATOR__TRADES_PER_SECOND="20")
    with running("up", "--simulate", env=env) as (process, base):
        wait_for(f"{base}/v1/ohlcv?exchange=binance&symbol=BTC/USDT", lambda r: r.status_code == 200
                 and len(r.json()["candles"]) > 0, timeout=60)
        browser.get(f"{base}/?exchange=binance&symbol=BTC/USDT&timeframe=1m")
        until("the page to go live", lambda: browser.execute_script("return window.ticklake.status()") == "live"
              and held(browser), 30)
        assert_same_candles(held(browser), served(base, "binance", "BTC/USDT", "1m"))
        # The newest candle is the open one, drawn apart (at a minute's turn, the next one comes first).
        until("an open newest candle", lambda: not held(browser)[-1]["closed"], 10)

        # A live update within 2 s.
        updates = browser.execute_script("return window.ticklake.updates()")
        started = time.monotonic()
        until("a live update", lambda: browser.execute_script("return window.ticklake.updates()") > updates, 2.0)
        assert time.monotonic() - started <= 2.0
        browser.save_screenshot(str(tmp_path / "live.png"))

        # Another market and timeframe, from the pickers: history of 700 candles, the newest 500 first.
        Select(browser.find_element(By.ID, "market")).select_by_value("binance|SYM0/USDT")
        until("the history to load", lambda: browser.execute_script(
            "return window.ticklake.selection().symbol") == "SYM0/USDT" and len(held(browser)) >= 500, 30)
        history = served(base, "binance", "SYM0/USDT", "1m")
        assert len(history) == HISTORY_CANDLES and len(held(browser)) == 500
        assert_same_candles(held(browser), history)
        # Scrolling back past the oldest candle held loads the page before it.
        browser.execute_script("Plotly.relayout(document.getElementById('chart'), "
                               "{'xaxis.range': ['1970-01-02', new Date().toISOString()]})")
        until("older candles", lambda: len(held(browser)) == HISTORY_CANDLES, 30)
        assert [c["time"] for c in held(browser)] == sorted(history)
        assert all(c["closed"] for c in held(browser))

        Select(browser.find_element(By.ID, "market")).select_by_value("kraken|BTC/USD")
        Select(browser.find_element(By.ID, "timeframe")).select_by_value("5m")
        until("kraken 5m", lambda: browser.execute_script("return window.ticklake.selection()") ==
              {"exchange": "kraken", "symbol": "BTC/USD", "timeframe": "5m"} and held(browser)
              and browser.execute_script("return window.ticklake.status()") == "live", 30)
        assert_same_candles(held(browser), served(base, "kraken", "BTC/USD", "5m"))
        browser.get(f"{base}/?exchange=binance&symbol=BTC/USDT&timeframe=1m")
        until("the page to go live again", lambda: browser.execute_script("return window.ticklake.status()")
              == "live", 30)
        time.sleep(1)
        shot = tmp_path / "page.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get("TICKLAKE_SCREENSHOT"):
            shutil.copy(shot, os.environ["TICKLAKE_SCREENSHOT"])
        process.terminate()


def test_the_page_asks_for_a_key_when_the_api_needs_one_then_shows_the_chart(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    from ticklake.api.keys import KeyStore

    data_dir = tmp_path / "data"
    key, _ = KeyStore(data_dir / "api_keys.json").create("page", 50, 100)
    env = env_for(data_dir, TICKLAKE_API__AUTH="keys", TICKLAKE_VENUES__BINANCE__SYMBOLS='["BTC/USDT"]',
                  TICKLAKE_VENUES__KRAKEN__ENABLED="false", TICKLAKE_VENUES__COINBASE__ENABLED="false",
                  TICKLAKE_SIMULATOR__TRADES_PER_SECOND="20")
    with running("up", "--simulate", env=env) as (process, base):
        def candles_stored() -> bool:
            with contextlib.suppress(httpx.TransportError):
                answer = httpx.get(f"{base}/v1/ohlcv", params={"exchange": "binance", "symbol": "BTC/USDT"},
                                   headers={"X-API-Key": key}, timeout=5)
                return answer.status_code == 200 and len(answer.json()["candles"]) > 0
            return False

        until("stored candles", candles_stored, 60)
        browser.get(f"{base}/?exchange=binance&symbol=BTC/USDT&timeframe=1m")
        field = until("the key field", lambda: (lambda f: f if f.is_displayed() else None)(
            browser.find_element(By.ID, "apikey")), 30)
        assert "API key" in browser.find_element(By.ID, "detail").text
        field.send_keys(key)
        browser.find_element(By.CSS_SELECTOR, "#keyform button").click()
        # The chart's history (with the key as a header) and the live stream (with it as a parameter).
        until("the page to go live", lambda: browser.execute_script("return window.ticklake.status()") == "live"
              and held(browser), 30)
        assert not browser.find_element(By.ID, "apikey").is_displayed()
        assert browser.execute_script("return localStorage.getItem('ticklake.apiKey')") == key
        process.terminate()
