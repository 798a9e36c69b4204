"""The command line as a user runs it: separate processes, real ports, signals, restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import UPPER_NAMES, env_for, free_port, running, stop, ticklake, wait_for
from ticklake.venues import NAMES

pytestmark = pytest.mark.integration


def trade_count(base: str) -> int:
    symbols = httpx.get(f"{base}/v1/symbols", timeout=10).json()["symbols"]
    return sum(s["trades"] or 0 for s in symbols)


@pytest.mark.slow
def test_up_simulate_serves_candles_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    env = env_for(tmp_path, TICKLAKE_VENUES__BINANCE__SYMBOLS='["BTC/USDT","ETH/USDT"]',
                  TICKLAKE_VENUES__KRAKEN__SYMBOLS='["BTC/USD"]', TICKLAKE_VENUES__COINBASE__SYMBOLS='["BTC/USD"]',
                  TICKLAKE_SIMULATOR__TRADES_PER_SECOND="30")
    with running("up", "--simulate", env=env) as (process, base):
        health = wait_for(f"{base}/health", lambda r: r.status_code == 200
                          and r.json()["components"]["feeds"]["status"] == "ok").json()
        assert set(health["components"]["feeds"]["venues"]) == set(NAMES)
        wait_for(f"{base}/v1/ohlcv?exchange=binance&symbol=BTC/USDT&timeframe=1m",
                 lambda r: r.status_code == 200 and r.json()["candles"])
        trades = httpx.get(f"{base}/v1/trades", params={"exchange": "kraken", "symbol": "BTC/USD", "limit": 5000},
                           timeout=10).json()["trades"]
        candles = httpx.get(f"{base}/v1/ohlcv", params={"exchange": "kraken", "symbol": "BTC/USD", "timeframe": "1d"},
                            timeout=10).json()["candles"]
        # candles are queried after trades, so they can only hold more
        assert sum(c["trades"] for c in candles) >= len(trades) > 0
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "ticklake_feed_trades_total" in metrics
        # What the alert rules watch beside ticklake's own series: the process, and each venue last heard.
        samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
        assert float(samples["process_start_time_seconds"]) > 0 and float(samples["process_resident_memory_bytes"]) > 0
        for name in NAMES:
            heard = float(samples[f'ticklake_feed_last_frame_timestamp_seconds{{exchange="{name}"}}'])
            assert time.time() - heard < 60, name
        output = stop(process)
    assert "stopped" in output
    with running("up", "--simulate", env=env) as (process, base):
        wait_for(f"{base}/health", lambda r: r.status_code == 200)
        assert trade_count(base) >= len(trades)
        stop(process)


@pytest.mark.slow
def test_up_with_unreachable_venues_reports_them_and_keeps_serving(tmp_path: Path) -> None:
    # Point every venue at a closed loopback port: as unreachable as the internet is from CI.
    closed = free_port()
    env = env_for(tmp_path, **{f"TICKLAKE_VENUES__{v}__WS_URL": f"ws://127.0.0.1:{closed}"
                               for v in UPPER_NAMES},
                  TICKLAKE_FEED__BACKOFF_INITIAL_S="0.2", TICKLAKE_FEED__BACKOFF_MAX_S="1")
    with running("up", env=env) as (process, base):
        health = wait_for(f"{base}/health", lambda r: len(r.json()["components"]["feeds"]["venues"]) == len(UPPER_NAMES)
                          and all(v["last_error"] for v in r.json()["components"]["feeds"]["venues"].values()))
        assert health.status_code == 503 and health.json()["components"]["feeds"]["status"] == "down"
        assert health.json()["components"]["warehouse"]["status"] == "ok"
        assert httpx.get(f"{base}/v1/symbols", timeout=10).status_code == 200
        time.sleep(2)
        assert process.poll() is None
        output = stop(process)
    for venue in NAMES:
        assert f"{venue}: cannot connect" in output, output[-3000:]


@pytest.mark.slow
def test_record_then_replay_stores_every_trade_once(tmp_path: Path) -> None:
    env = env_for(tmp_path / "data", TICKLAKE_VENUES__BINANCE__SYMBOLS='["BTC/USDT"]',
                  TICKLAKE_VENUES__KRAKEN__SYMBOLS='["ETH/USD"]', TICKLAKE_VENUES__COINBASE__SYMBOLS='["SOL/USD"]',
                  TICKLAKE_SIMULATOR__TRADES_PER_SECOND="50")
    recording = tmp_path / "session.tlrec"
    result = ticklake("record", str(recording), "--simulate", "--seconds", "3", env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in recording.read_text().splitlines()]
    assert {line["exchange"] for line in lines} == set(NAMES)
    assert any(line["dir"] == "sent" for line in lines)  # subscriptions are recorded too

    first = ticklake("replay", str(recording), env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["trades"] > 50 and summary["parse_errors"] == 0
    assert summary["stored_trades"] == summary["silver_trades"] == summary["trades"] - summary["duplicates"]

    again = json.loads(ticklake("replay", str(recording), env=env).stdout)
    assert again["stored_trades"] == 0 and again["duplicates"] == summary["trades"]

    # Then browsed: `ticklake api` serves the stored warehouse and connects to no venue (the venues
    # configured here are unreachable on purpose).
    unreachable = {f"TICKLAKE_VENUES__{v}__WS_URL": "ws://127.0.0.1:9/" for v in UPPER_NAMES}
    with running("api", env={**env, **unreachable}) as (process, base):
        symbols = wait_for(f"{base}/v1/symbols", lambda r: r.status_code == 200).json()["symbols"]
        assert sum(s["trades"] for s in symbols) == summary["stored_trades"]
        assert wait_for(f"{base}/health", lambda r: r.status_code == 200).json()["status"] == "ok"
        output = stop(process)
    assert "venues:" not in output and "127.0.0.1:9" not in output


def test_broken_configuration_is_a_clear_error(tmp_path: Path) -> None:
    result = ticklake("config", env=env_for(tmp_path, TICKLAKE_API__PORT="eighty"))
    assert result.returncode == 2
    assert "api.port" in result.stderr and "Traceback" not in result.stderr
    config = tmp_path / "ticklake.toml"
    config.write_text("[retention]\nbronze_days = 3\n")
    result = ticklake("config", env=env_for(tmp_path, TICKLAKE_CONFIG=str(config)))
    assert result.returncode == 2 and "max_age_days" in result.stderr
    config.write_text("[venues.binance\nsymbols = 1\n")
    result = ticklake("config", env=env_for(tmp_path, TICKLAKE_CONFIG=str(config)))
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_migrate_status_rollback_and_upgrade(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert "0001_layers: applied" in ticklake("migrate", env=env).stdout
    rolled = ticklake("migrate", "--to", "0", env=env)
    assert "0001_layers: pending" in rolled.stdout, rolled.stderr
    assert "0001_layers: applied" in ticklake("migrate", env=env).stdout


def test_roles_need_a_kafka_bus_and_say_so(tmp_path: Path) -> None:
    """With the embedded bus the roles cannot run apart: a clear error, not a half-started platform."""
    for command in (["feed"], ["ingest"], ["up", "--roles", "feed"], ["up", "--roles", "ingest,api"]):
        done = ticklake(*command, env=env_for(tmp_path / "data"), timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert "TICKLAKE_BUS__KIND=kafka" in done.stderr
    done = ticklake("up", "--roles", "feed,warehouse", env=env_for(tmp_path / "data", TICKLAKE_BUS__KIND="kafka"))
    assert done.returncode == 2 and "unknown roles ['warehouse']" in done.stderr
