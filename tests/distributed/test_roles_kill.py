"""The distributed roles as separate processes around a real Kafka-protocol broker, killed at random.

simulated venues (own process) -> ``ticklake feed`` -> broker -> ``ticklake ingest --api`` (chdb) -> API

While the venues trade on: the ingest role is killed with SIGKILL 20 times at random points, then the
feed role 20 times, then the broker is restarted three times under both roles (the feed recovers in
its process, without a supervisor), then the broker loses messages it had acknowledged and the
ingester had not read yet (records deleted), which only the warehouse's completeness check can find.
At the end, every trade the venues made between the first and the last stored trade is stored exactly
once (checked against the venues' own tapes), and every candle the API serves equals a recomputation
from the stored trades.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

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
from tests.support.stored import all_trades, rfc3339_us

MARKETS = {"binance": ["BTC/USDT", "ETH/USDT"], "kraken": ["BTC/USD"], "coinbase": ["ETH/USD"]}
RATE_PER_MARKET = 450.0  # ~1,800 trades/s over four markets: > 200k trades during the ingest kills


def health(base: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base}/health", timeout=10).json()
    return body


def consumed(base: str) -> int:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("ticklake_bus_consumed_total{")))


def metric_total(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((f"{name}{{", f"{name} ")))


def delete_unread_records(bootstrap: str, markets: dict[str, list[str]], keep: int) -> None:
    """Delete every message but the newest ``keep`` of each partition of the markets' topics (Kafka's
    DeleteRecords): what an ingester had not read yet is gone although the broker acknowledged it."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = admin.list_topics(timeout=10).topics
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ticklake-test-truncate"})
    cuts = []
    try:
        for exchange in markets:
            for topic in (f"market.crypto.trades.{exchange}", f"market.crypto.trades.{exchange}.raw"):
                for partition in topics[topic].partitions:
                    _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                    cuts.append(TopicPartition(topic, partition, max(0, high - keep)))
    finally:
        consumer.close()
    for future in admin.delete_records(cuts, request_timeout=30).values():
        future.result(timeout=30)


def caught_up(base: str, quiet_s: float = 3.0, timeout: float = 180) -> None:
    """Wait until the ingester has read everything and nothing new arrived for ``quiet_s``."""
    deadline = time.monotonic() + timeout
    last = (-1, -1)
    since = time.monotonic()
    while time.monotonic() < deadline:
        try:
            bus = health(base)["components"]["bus"]
            ingest = health(base)["components"]["ingest"]
            state = (int(bus.get("consumer_lag", 1)), int(ingest["trades"]) + int(ingest["frames"]))
        except (httpx.HTTPError, KeyError, ValueError):
            state = (-1, -1)
        if state != last or state[0] != 0:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)
    raise AssertionError(f"the ingester never caught up: {last}")


def candles_checked(base: str, newest_trade_s: float, settle_s: float, timeout: float = 180) -> None:
    """Wait until a completeness check that began after the newest trade's minute had settled has
    finished: the check that finds (and recomputes) candle windows a crash cut short inside the gold
    view, whose messages the broker then lost (step 4). Until then such a candle may be short; that is
    the check's documented delay, not what this test asserts on."""
    settled = (newest_trade_s // 60 + 1) * 60 + settle_s
    deadline = time.monotonic() + timeout
    seen_after: float | None = None  # a check ending after ``settled``; the next one began after it
    while time.monotonic() < deadline:
        last = health(base)["components"]["completeness"].get("last_check_at") or 0.0
        if seen_after is not None and last > seen_after:
            return
        if seen_after is None and last > settled:
            seen_after = last
        time.sleep(0.5)
    raise AssertionError("no completeness check covered the last minute")


def started(log: Path, count: int, timeout: float = 60) -> None:
    """Wait until the role logging to ``log`` has finished starting ``count`` times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("ticklake: roles:") >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{log.name}: start #{count} never completed")


def complete(base: str, timeout: float, supervise: Callable[[], None]) -> None:
    """Wait until every market's stored trade ids run without a hole from first to last."""
    deadline = time.monotonic() + timeout
    holes: dict[tuple[str, str], int] = {}
    while time.monotonic() < deadline:
        supervise()
        holes = {}
        for exchange, symbols in MARKETS.items():
            for symbol in symbols:
                ids = sorted({int(t["trade_id"]) for t in all_trades(base, exchange, symbol)})
                missing = (ids[-1] - ids[0] + 1 - len(ids)) if ids else -1
                if missing:
                    holes[(exchange, symbol)] = missing
        if not holes:
            return
        time.sleep(2)
    raise AssertionError(f"trades still missing after {timeout:.0f} s: {holes}")


def candles_from(trades: list[dict[str, Any]], seconds: int) -> dict[int, tuple[Any, ...]]:
    windows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in trades:
        windows[rfc3339_us(t["time"]) // 1_000_000 // seconds * seconds].append(t)
    result = {}
    for start_s, members in windows.items():
        ordered = sorted(members, key=lambda t: (rfc3339_us(t["time"]), int(t["trade_id"])))
        prices = [Decimal(t["price"]) for t in ordered]
        result[start_s] = (prices[0], max(prices), min(prices), prices[-1],
                           sum((Decimal(t["qty"]) for t in ordered), Decimal(0)), len(ordered))
    return result


def served_candles(base: str, exchange: str, symbol: str, timeframe: str) -> dict[int, tuple[Any, ...]]:
    body = httpx.get(f"{base}/v1/ohlcv", params={"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                                                  "limit": 5000}, timeout=30).json()
    return {rfc3339_us(c["time"]) // 1_000_000: (Decimal(c["open"]), Decimal(c["high"]), Decimal(c["low"]),
                                                 Decimal(c["close"]), Decimal(c["volume"]), int(c["trades"]))
            for c in body["candles"]}


@pytest.mark.slow
def test_kill_9_of_every_role_and_a_broker_restart_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    broker = Broker(tmp_path / "broker").start()
    simulator, urls = start_simulator(23, RATE_PER_MARKET, MARKETS)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = env_for(tmp_path / "data", TICKLAKE_BUS__KIND="kafka",
                      TICKLAKE_BUS__KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap,
                      TICKLAKE_BUS__KAFKA__PARTITIONS="3", TICKLAKE_BUS__KAFKA__SESSION_TIMEOUT_MS="6000",
                      # Static membership: the restarted ingester takes its partitions back at once
                      # (with dynamic membership this broker waits out the dead member's poll interval).
                      TICKLAKE_BUS__KAFKA__INSTANCE_ID="ingest-1",
                      TICKLAKE_FEED__BACKOFF_INITIAL_S="0.1", TICKLAKE_FEED__BACKOFF_MAX_S="1",
                      # The warehouse's completeness check, sooner than its defaults (60 s, 60 s); trades
                      # younger than 10 s are left to the feed's own backfill.
                      TICKLAKE_COMPLETENESS__INTERVAL_S="2", TICKLAKE_COMPLETENESS__SETTLE_S="10",
                      TICKLAKE_API__PORT=str(port), TICKLAKE_METRICS__PORT="0", TICKLAKE_LOG_LEVEL="INFO")
        env.update(venue_env(MARKETS, urls))
        topics = subprocess.run([sys.executable, "-m", "ticklake.cli", "topics"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=60)
        assert topics.returncode == 0, topics.stderr

        feed = start(["feed"], env, tmp_path / "feed.log")
        processes.append(feed)
        ingest = start(["ingest", "--api"], env, tmp_path / "ingest.log")
        processes.append(ingest)

        # 1. The ingester, killed 20 times at random points: mid-batch, mid-join, mid-start.
        kills = 0
        while kills < 20:
            # Killed once it is writing (it has rejoined the group and written a batch), at a random point.
            wait_for(f"{base}/health", lambda r: r.json()["components"]["ingest"]["batches"] > 0, timeout=90)
            time.sleep(rng.uniform(0.0, 1.5))
            kill(ingest)
            kills += 1
            ingest = start(["ingest", "--api"], env, tmp_path / "ingest.log")
            processes.append(ingest)
        wait_for(f"{base}/health", lambda r: r.status_code in (200, 503), timeout=60)

        # 2. The feed role, killed 20 times while the venues trade on: each downtime (and a backfill
        # cut short by the next kill) is backfilled from REST.
        for restarts in range(20):
            started(tmp_path / "feed.log", restarts + 1)  # running (resumed, connected), then killed
            # Long enough, mostly, for the last downtime's backfill; often killed in the middle of it.
            time.sleep(rng.uniform(1.5, 3.5))
            kill(feed)
            time.sleep(rng.uniform(0.2, 1.0))
            feed = start(["feed"], env, tmp_path / "feed.log")
            processes.append(feed)

        # 3. The broker restarts under both roles, three times. This broker (a test double) may lose
        # messages it had acknowledged when it restarts mid-stream, and forget the producer's
        # sequence numbers (its producer then fails for good). The feed recovers in its own process,
        # as started here (no supervisor): a fresh producer, and a check of what the broker holds,
        # whose holes it backfills from the venues.
        def still_running() -> None:
            assert feed.poll() is None, f"the feed role exited with {feed.returncode}"

        for _ in range(3):
            time.sleep(rng.uniform(2.0, 4.0))
            still_running()
            broker.restart()

        # The venues trade on until the last downtime is backfilled (Kraken's REST limit makes it
        # take a few seconds); a hole that never closes fails here.
        time.sleep(5)
        complete(base, timeout=300, supervise=still_running)

        # 4. The broker loses messages it had acknowledged, which the ingester had not read yet: the
        # feed saw nothing wrong, so only the warehouse's completeness check can find the holes.
        kill(ingest)
        time.sleep(3)
        delete_unread_records(broker.bootstrap, MARKETS, keep=50)
        ingest = start(["ingest", "--api"], env, tmp_path / "ingest.log")
        processes.append(ingest)
        wait_for(f"{base}/health", lambda r: r.json()["components"]["ingest"]["batches"] > 0, timeout=90)
        time.sleep(5)
        complete(base, timeout=300, supervise=still_running)
        assert metric_total(base, "ticklake_bus_expired_total") > 0  # the loss was real
        assert metric_total(base, "ticklake_completeness_trades_filled_total") > 0  # and the check filled it
        time.sleep(5)
        complete(base, timeout=300, supervise=still_running)
        still_running()

        tapes = stop_simulator(simulator, urls, MARKETS)
        feed.send_signal(signal.SIGTERM)  # delivers what its producer still holds
        feed.wait(60)
        caught_up(base)
        stored = {(ex, sym): all_trades(base, ex, sym) for ex, syms in MARKETS.items() for sym in syms}
        newest = max(rfc3339_us(t["time"]) for trades in stored.values() for t in trades) / 1e6
        candles_checked(base, newest, settle_s=10)
        served = {(ex, sym, tf): served_candles(base, ex, sym, tf)
                  for ex, syms in MARKETS.items() for sym in syms for tf in ("1m", "1h")}
        ingest_health = health(base)
    finally:
        stop_all(processes, simulator, broker)

    total = 0
    for (exchange, symbol), trades in stored.items():
        assert_exactly_the_tape(trades, tapes[f"{exchange}|{symbol}"], f"{exchange} {symbol}")
        total += len(trades)
        for timeframe, seconds in (("1m", 60), ("1h", 3600)):
            assert served[(exchange, symbol, timeframe)] == candles_from(trades, seconds), \
                f"{exchange} {symbol} {timeframe}: candles differ from a recomputation"
    assert total >= 200_000, f"only {total} trades went through"
    # Summary for the log: pytest -s shows it.
    print(f"{total} trades stored exactly once across 20 ingest kills, 20 feed kills, 3 broker restarts "
          "and a deliberate loss of acknowledged messages")
    assert ingest_health["components"]["ingest"]["status"] == "ok"
