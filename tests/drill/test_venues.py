"""The simulated venues' process (``ticklake.drill.venues``) as the drill and the kill tests run it: the
tapes it serves once paused are final (the oracle cannot miss a trade sent after it was taken), and a
tape is the venue's trades, in order, once each."""

from __future__ import annotations

import time

import httpx

from tests.support.roles import start_simulator, stop_simulator
from ticklake.drill.venues import TAPE_FIELDS

MARKETS = {"binance": ["BTC/USDT"], "kraken": ["BTC/USD"]}


def _tape_rows(control: str, exchange: str, symbol: str) -> list[list[object]]:
    response = httpx.get(f"{control}/tape", params={"exchange": exchange, "symbol": symbol}, timeout=30)
    response.raise_for_status()
    rows: list[list[object]] = response.json()
    return rows


def test_tapes_taken_after_a_pause_are_final_and_the_process_stops_cleanly() -> None:
    simulator, urls = start_simulator(3, 50.0, MARKETS)
    control = urls["control_url"]
    try:
        assert set(urls["ws_urls"]) == set(urls["rest_urls"]) == set(MARKETS)
        deadline = time.monotonic() + 30
        while min(len(_tape_rows(control, ex, sym)) for ex, syms in MARKETS.items() for sym in syms) < 20:
            assert time.monotonic() < deadline, "the venues made fewer than 20 trades a market in 30 s"
            time.sleep(0.1)
        httpx.post(f"{control}/pause", timeout=10).raise_for_status()
        paused = {(ex, sym): _tape_rows(control, ex, sym) for ex, syms in MARKETS.items() for sym in syms}
        time.sleep(0.5)  # at 50 trades/s a market, a venue still trading would add ~25 trades
        assert {(ex, sym): _tape_rows(control, ex, sym) for ex, syms in MARKETS.items() for sym in syms} == paused

        tapes = stop_simulator(simulator, urls, MARKETS)
        assert simulator.returncode == 0
    finally:
        if simulator.poll() is None:
            simulator.kill()
            simulator.wait(10)

    for (exchange, symbol), rows in paused.items():
        tape = tapes[f"{exchange}|{symbol}"]
        assert tape == [dict(zip(TAPE_FIELDS, row, strict=True)) for row in rows]
        ids = [trade["trade_id"] for trade in tape]
        assert ids == sorted(set(ids)), f"{exchange} {symbol}: ids out of order or repeated"
        assert all(isinstance(trade["price"], str) and isinstance(trade["ts_us"], int) for trade in tape)
