"""kill -9 of ticklake in the middle of a session, several times, then a restart: after backfill the
stored tape is complete — every trade the venues made while ticklake was down or dying is there, once.

The simulated venues run in their own process and keep trading while ticklake is killed, as real
venues would; the trades made during the downtime are only on their REST APIs.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.processes import REPO, env_for, free_port, wait_for
from tests.support.roles import start_simulator, stop_simulator, venue_env
from tests.support.stored import all_trades, rfc3339_us

MARKETS = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USD"], "coinbase": ["ETH/USD"], "okx": ["BTC/USDT"]}


@pytest.mark.slow
def test_kill_9_mid_session_then_restart_leaves_a_complete_tape(tmp_path: Path) -> None:
    simulator, urls = start_simulator(11, 20, MARKETS)
    try:
        env = env_for(tmp_path / "data", TICKLAKE_FEED__BACKOFF_INITIAL_S="0.1", TICKLAKE_FEED__BACKOFF_MAX_S="1")
        env.update(venue_env(MARKETS, urls))
        rng = random.Random(5)
        port = free_port()
        env["TICKLAKE_API__PORT"] = str(port)
        base = f"http://127.0.0.1:{port}"

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen([sys.executable, "-m", "ticklake.cli", "up"], cwd=REPO, env=env, text=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        for _ in range(4):
            process = start()
            wait_for(f"{base}/health", lambda r: r.status_code == 200, timeout=60)
            time.sleep(rng.uniform(1.0, 3.0))
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            time.sleep(rng.uniform(0.5, 2.0))  # the venues trade on while ticklake is down

        process = start()
        try:
            wait_for(f"{base}/health", lambda r: r.status_code == 200, timeout=60)
            time.sleep(8)  # backfill the last downtime
            tapes = stop_simulator(simulator, urls, MARKETS)
            stored = {(ex, sym): all_trades(base, ex, sym) for ex, syms in MARKETS.items() for sym in syms}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    finally:
        if simulator.poll() is None:
            simulator.kill()

    for (exchange, symbol), trades in stored.items():
        tape = tapes[f"{exchange}|{symbol}"]
        assert len(trades) > 50, (exchange, symbol)
        ids = [int(t["trade_id"]) for t in trades]
        assert len(ids) == len(set(ids)), f"{exchange} {symbol}: a trade stored twice"
        by_id = {t["trade_id"]: t for t in tape}
        first, last = min(ids), max(ids)
        expected = [t for t in tape if first <= t["trade_id"] <= last]
        assert sorted(ids) == [t["trade_id"] for t in expected], f"{exchange} {symbol}: trades missing"
        for trade in trades:
            oracle = by_id[int(trade["trade_id"])]
            assert (Decimal(trade["price"]), Decimal(trade["qty"]), trade["side"], rfc3339_us(trade["time"])) == \
                   (Decimal(oracle["price"]), Decimal(oracle["qty"]), oracle["side"], oracle["ts_us"])
