"""A local exchange simulator: loopback servers that speak Binance, Kraken v2 and Coinbase Advanced
Trade exactly as the venues do (WebSocket and REST trade endpoints), driven by seeded synthetic
tapes that tests use as the oracle, with scriptable faults."""

from ticklake.simulator.faults import FaultEvent
from ticklake.simulator.rest import RestLimit, RestRecord
from ticklake.simulator.server import Simulator
from ticklake.simulator.tape import TapeTrade
from ticklake.simulator.venue import ConnectionRecord, VenueOptions

__all__ = ["ConnectionRecord", "FaultEvent", "RestLimit", "RestRecord", "Simulator", "TapeTrade", "VenueOptions"]
