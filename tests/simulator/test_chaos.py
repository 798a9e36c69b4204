"""Chaos: random faults over time, deterministic in its choices, logged so a failure can be explained."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ticklake.settings import SimulatorSettings
from ticklake.simulator import RestLimit, Simulator, VenueOptions
from ticklake.simulator.faults import CHAOS_FAULTS, Chaos

from .wire import binance_walk, connect, key, until

VENUES = {"binance": ["BTC/USDT"], "kraken": ["BTC/USD"], "coinbase": ["BTC/USD", "ETH/USD"]}
OPTIONS = VenueOptions(tick_s=0.01, batch_interval_s=0.05, shutdown_grace_s=0.05, rest_limit=RestLimit())


def test_chaos_choices_are_deterministic_given_the_seed() -> None:
    sim = Simulator(SimulatorSettings(seed=1), VENUES)
    first, again, other = ([c.next_fault() for _ in range(30)] for c in
                           (Chaos(sim, 3, 0.5, list(VENUES)), Chaos(sim, 3, 0.5, list(VENUES)),
                            Chaos(sim, 4, 0.5, list(VENUES))))
    assert first == again and first != other
    assert {fault for _, _, fault, _ in first} <= set(CHAOS_FAULTS)
    assert {exchange for _, exchange, _, _ in first} == set(VENUES)
    with pytest.raises(ValueError, match="cannot apply"):
        Chaos(sim, 3, 0.5, list(VENUES), faults=["set_rest_limit"])


async def test_chaos_applies_and_logs_faults_and_the_simulator_survives(http: httpx.AsyncClient) -> None:
    async with Simulator(SimulatorSettings(seed=9, trades_per_second=100), VENUES, options=OPTIONS) as sim:
        conn = await connect(sim, "kraken", "BTC/USD")
        chaos = sim.chaos(seed=21, mean_interval_s=0.03, max_stall_s=0.1)
        await asyncio.sleep(0.8)
        await sim.stop_chaos()
        assert chaos.task is None
        applied = [event for event in sim.fault_log if event.source == "chaos"]
        assert len(applied) >= 8, sim.fault_report()
        assert {event.fault for event in applied} <= set(CHAOS_FAULTS)
        assert len({event.fault for event in applied}) >= 4, sim.fault_report()
        assert all(str(event).count("[chaos]") == 1 for event in applied)
        count = len(sim.fault_log)
        await asyncio.sleep(0.1)
        assert len(sim.fault_log) == count  # stopped means stopped

        # Afterwards: faults cleared, the venues still serve sockets and the whole tape over REST.
        sim.clear_faults()
        conn.close()
        again = await connect(sim, "kraken", "BTC/USD")
        await until(lambda: len(again.ids()) >= 3, what="trades after chaos")
        sim.pause()
        tape = sim.tape("binance", "BTC/USDT")
        walked = await binance_walk(http, sim.rest_urls["binance"], "BTCUSDT", tape[0].trade_id, 1000)
        assert [key(t) for t in walked] == [key(t) for t in tape]
        again.close()


async def test_chaos_can_be_limited_to_some_venues_and_faults() -> None:
    async with Simulator(SimulatorSettings(seed=9, trades_per_second=50), VENUES, options=OPTIONS) as sim:
        sim.chaos(seed=2, mean_interval_s=0.02, exchanges=["coinbase"], faults=["duplicate_next", "skip_next"])
        await asyncio.sleep(0.3)
    events = [event for event in sim.fault_log if event.source == "chaos"]
    assert events and {e.exchange for e in events} == {"coinbase"}
    assert {e.fault for e in events} <= {"duplicate_next", "skip_next"}
