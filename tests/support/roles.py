"""Running the roles as processes against a broker and the simulated venues in a process of their own
(the drill's, ``ticklake.drill.venues``), and killing them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.broker import Broker
from tests.support.processes import REPO
from tests.support.stored import rfc3339_us
from ticklake.drill import venues as simulated_venues
from ticklake.venues import NAMES


def start_simulator(seed: int, rate: float, markets: dict[str, list[str]]
                    ) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The simulated venues in a process of their own (they trade on while ticklake's roles die), and
    the URLs it prints: ``ws_urls``, ``rest_urls`` per venue and ``control_url`` (see ``stop_simulator``)."""
    simulator = subprocess.Popen(simulated_venues.command(seed, rate, markets), cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stdout=subprocess.PIPE, text=True)
    assert simulator.stdout is not None
    urls: dict[str, Any] = json.loads(simulator.stdout.readline())
    return simulator, urls


def stop_simulator(simulator: subprocess.Popen[str], urls: dict[str, Any], markets: dict[str, list[str]]
                   ) -> dict[str, list[dict[str, Any]]]:
    """Stop the venues trading, take every market's tape (the oracle, final once they are paused) as
    ``{"exchange|symbol": [{"trade_id": ..., "price": ..., "qty": ..., "side": ..., "ts_us": ...}]}``,
    then stop the process (its servers close, as a venue's outage)."""
    control = urls["control_url"]
    httpx.post(f"{control}/pause", timeout=10).raise_for_status()
    tapes = {}
    for exchange, symbols in markets.items():
        for symbol in symbols:
            response = httpx.get(f"{control}/tape", params={"exchange": exchange, "symbol": symbol}, timeout=60)
            response.raise_for_status()
            tapes[f"{exchange}|{symbol}"] = [dict(zip(simulated_venues.TAPE_FIELDS, row, strict=True))
                                             for row in response.json()]
    simulator.send_signal(signal.SIGTERM)
    simulator.wait(30)
    return tapes


def stop_all(processes: list[subprocess.Popen[bytes]], simulator: subprocess.Popen[str], broker: Broker) -> None:
    """Stop the roles (SIGTERM, then SIGKILL), the venues and the broker, whatever state they are in."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    if simulator.poll() is None:
        simulator.kill()
    broker.remove()


def venue_env(markets: dict[str, list[str]], urls: dict[str, dict[str, str]]) -> dict[str, str]:
    """Settings pointing every venue of ``markets`` at the simulator's URLs."""
    env = {}
    for exchange, symbols in markets.items():
        upper = exchange.upper()
        env[f"TICKLAKE_VENUES__{upper}__SYMBOLS"] = json.dumps(symbols)
        env[f"TICKLAKE_VENUES__{upper}__WS_URL"] = urls["ws_urls"][exchange]
        env[f"TICKLAKE_VENUES__{upper}__REST_URL"] = urls["rest_urls"][exchange]
    for other in NAMES:  # a registered venue the simulator does not play would reach the real one
        if other not in markets:
            env[f"TICKLAKE_VENUES__{other.upper()}__ENABLED"] = "false"
    return env


def assert_exactly_the_tape(trades: list[dict[str, Any]], tape: list[dict[str, Any]], market: str) -> None:
    """Every trade the venue made between the first and last stored one is stored, once, exactly."""
    ids = [int(t["trade_id"]) for t in trades]
    assert len(ids) == len(set(ids)), f"{market}: a trade stored twice"
    first, last = min(ids), max(ids)
    expected = [t for t in tape if first <= t["trade_id"] <= last]
    assert sorted(ids) == [t["trade_id"] for t in expected], f"{market}: trades missing"
    by_id = {t["trade_id"]: t for t in tape}
    for trade in trades:
        oracle = by_id[int(trade["trade_id"])]
        assert (Decimal(trade["price"]), Decimal(trade["qty"]), trade["side"], rfc3339_us(trade["time"])) == \
               (Decimal(oracle["price"]), Decimal(oracle["qty"]), oracle["side"], oracle["ts_us"]), market


def start(args: list[str], env: dict[str, str], log: Path,
          preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    """``ticklake <args>`` logging to ``log``; ``preexec_fn`` runs in the child first (say, to join a cgroup)."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "ticklake.cli", *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)
