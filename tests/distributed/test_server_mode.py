"""Distributed mode against a ClickHouse *server*: two ingest processes in one consumer group, one
killed with SIGKILL, the other takes its partitions over; an API process of its own serves the data.

Needs CLICKHOUSE_URL (e.g. http://default:password@127.0.0.1:8123): no modern ClickHouse server
installs on the machines this suite was written on, and the embedded engine (chdb) admits one process
per data directory, so two ingest processes cannot share it. Each run uses a fresh database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.broker import Broker
from tests.support.processes import REPO, env_for, free_port, wait_for
from tests.support.roles import (
    assert_exactly_the_tape,
    kill,
    start,
    start_simulator,
    stop_all,
    stop_simulator,
    venue_env,
)
from tests.support.stored import all_trades

pytestmark = pytest.mark.skipif(
    not os.environ.get("CLICKHOUSE_URL"),
    reason="needs a ClickHouse server (set CLICKHOUSE_URL): two ingest processes cannot share an embedded chdb",
)

MARKETS = {"binance": ["BTC/USDT", "ETH/USDT", "SOL/USDT"], "coinbase": ["ETH/USD", "BTC/USD"]}


@pytest.mark.slow
def test_two_ingesters_one_killed_the_other_takes_over_with_no_loss_or_duplicate(tmp_path: Path) -> None:
    database = f"ticklake_it_{uuid.uuid4().hex[:8]}"
    broker = Broker(tmp_path / "broker").start()
    simulator, urls = start_simulator(31, 200, MARKETS)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = env_for(tmp_path / "data", TICKLAKE_BUS__KIND="kafka",
                      TICKLAKE_BUS__KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap,
                      TICKLAKE_BUS__KAFKA__PARTITIONS="4", TICKLAKE_BUS__KAFKA__SESSION_TIMEOUT_MS="6000",
                      TICKLAKE_BUS__KAFKA__MAX_POLL_INTERVAL_MS="20000",
                      TICKLAKE_WAREHOUSE_URL=os.environ["CLICKHOUSE_URL"], TICKLAKE_DATABASE=database,
                      TICKLAKE_API__PORT=str(port), TICKLAKE_METRICS__PORT="0", TICKLAKE_LOG_LEVEL="WARNING")
        env.update(venue_env(MARKETS, urls))
        env["TICKLAKE_VENUES__KRAKEN__ENABLED"] = "false"
        for command in (["migrate"], ["topics"]):
            done = subprocess.run([sys.executable, "-m", "ticklake.cli", *command], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr

        processes.append(feed := start(["feed"], env, tmp_path / "feed.log"))
        processes.append(first := start(["ingest"], env, tmp_path / "ingest-1.log"))
        processes.append(second := start(["ingest"], env, tmp_path / "ingest-2.log"))
        processes.append(start(["api"], env, tmp_path / "api.log"))
        wait_for(f"{base}/health", lambda r: r.status_code == 200, timeout=60)
        time.sleep(15)  # both members joined and are writing
        kill(first)
        time.sleep(25)  # the survivor takes the dead member's partitions over and catches up
        tapes = stop_simulator(simulator, urls, MARKETS)
        feed.send_signal(signal.SIGTERM)
        feed.wait(60)
        # The API process has no ingester to report on: wait until the stored tape stops growing.
        stored: dict[tuple[str, str], list[dict[str, object]]] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(3)
            now = {(ex, sym): all_trades(base, ex, sym) for ex, syms in MARKETS.items() for sym in syms}
            if stored and {k: len(v) for k, v in now.items()} == {k: len(v) for k, v in stored.items()}:
                break
            stored = now
        assert second.poll() is None
    finally:
        stop_all(processes, simulator, broker)

    for (exchange, symbol), trades in stored.items():
        assert_exactly_the_tape(trades, tapes[f"{exchange}|{symbol}"], f"{exchange} {symbol}")
