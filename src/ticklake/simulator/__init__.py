"""A local exchange simulator: loopback servers that speak Binance, Kraken v2 and Coinbase Advanced
Trade exactly as the venues do, driven by seeded synthetic tapes that tests use as the oracle."""

from ticklake.simulator.server import Simulator
from ticklake.simulator.tape import TapeTrade
from ticklake.simulator.venue import ConnectionRecord, VenueOptions

__all__ = ["ConnectionRecord", "Simulator", "TapeTrade", "VenueOptions"]
