"""Seeded synthetic trade tapes: the simulator's ground truth.

Each (venue, symbol) gets its own ``random.Random`` seeded from ``(seed, venue, symbol)``, so the
*content* of a tape (ids, prices, quantities, sides, burst structure, the spacing of timestamps) is
the same on every run with the same seed, whatever else the simulator does. Timestamps are a
schedule anchored at the tape's start time, not samples of the clock, so emission jitter never
changes what the tape says.

The tape is kept whole in memory: tests compare what ticklake stored against it, trade by trade.
Text is kept exactly as the venue puts it on the wire, because that is what the mappers must keep.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import msgspec

from ticklake.symbols import split_canonical
from ticklake.venues import NAMES, to_native

TakerSide = Literal["buy", "sell"]


class TapeTrade(msgspec.Struct, frozen=True):
    """One trade as the simulated venue published it (the oracle a test compares against)."""

    symbol: str  # canonical BASE/QUOTE
    trade_id: int  # native id; Coinbase puts it on the wire as a digit string
    price: str  # exactly the venue's text (Kraken: the JSON number token)
    qty: str
    side: TakerSide  # the taker's side
    ts_us: int  # exchange time, truncated to what the venue publishes (Binance: milliseconds)


# Reference price in USD, tick size and lot size per base asset. Ticks and lots follow the real
# spot venues closely enough that rendered prices look like theirs (BTC 0.01, DOGE 0.00001 ...).
_ASSETS: dict[str, tuple[str, str, str]] = {
    "BTC": ("65000", "0.01", "0.00001"),
    "ETH": ("3200", "0.01", "0.0001"),
    "SOL": ("150", "0.01", "0.001"),
    "XRP": ("0.55", "0.0001", "0.1"),
    "BNB": ("580", "0.01", "0.001"),
    "DOGE": ("0.12", "0.00001", "1"),
    "ADA": ("0.45", "0.0001", "0.1"),
    "AVAX": ("30", "0.01", "0.01"),
    "LINK": ("14", "0.001", "0.01"),
    "LTC": ("80", "0.01", "0.001"),
}
_FIAT_PER_USD: dict[str, str] = {"USD": "1", "USDT": "1", "USDC": "1", "FDUSD": "1", "EUR": "0.92", "GBP": "0.79"}

@dataclass(frozen=True)
class Instrument:
    exchange: str
    symbol: str
    native: str
    ref_price: Decimal
    tick: Decimal
    lot: Decimal
    time_resolution_us: int  # the venue's trade time resolution (Binance: milliseconds)
    # The venue's wire text for a price and a quantity (its server's ``render_price_qty``).
    render: Callable[[Decimal, Decimal, Instrument], tuple[str, str]]


def _tick_for(price: Decimal) -> Decimal:
    # About six significant digits of price: the usual tick for a pair without a table entry.
    exponent = math.floor(math.log10(float(price))) - 5
    return Decimal(1).scaleb(max(exponent, -8))


def instrument_for(exchange: str, symbol: str) -> Instrument:
    """Price scale, tick and lot of a simulated market, derived from the table or sensibly."""
    base, quote = split_canonical(symbol)
    base_usd, tick, lot = _ASSETS.get(base, ("10", "", "0.01"))
    if quote in _FIAT_PER_USD:
        price = Decimal(base_usd) * Decimal(_FIAT_PER_USD[quote])
        tick_size = Decimal(tick) if tick and quote in ("USD", "USDT", "USDC", "FDUSD") else _tick_for(price)
    else:  # a crypto quote (ETH/BTC): price is the ratio of the USD prices
        quote_usd = Decimal(_ASSETS.get(quote, ("10", "", ""))[0])
        price = Decimal(base_usd) / quote_usd
        tick_size = _tick_for(price)
    price = (price / tick_size).to_integral_value() * tick_size
    resolution_us, render = 1, render_to_tick
    if exchange in NAMES:  # the venue's simulated server says how it publishes trades
        from ticklake.simulator.registry import server_class  # the servers import this module
        server = server_class(exchange)
        resolution_us, render = server.time_resolution_us, server.render_price_qty
    return Instrument(
        exchange=exchange,
        symbol=symbol,
        native=to_native(exchange, symbol),
        ref_price=price,
        tick=tick_size,
        lot=Decimal(lot),
        time_resolution_us=resolution_us,
        render=render,
    )


def plain(value: Decimal) -> str:
    """Shortest plain decimal text: 65000, 0.1234 (never 6.5E+4)."""
    return format(value.normalize(), "f")


def render_to_tick(price: Decimal, qty: Decimal, instrument: Instrument) -> tuple[str, str]:
    """Price to the quote increment, size to 1e-8 (Coinbase; the default of a simulated venue)."""
    exponent = instrument.tick.as_tuple().exponent
    price_places = max(0, -exponent) if isinstance(exponent, int) else 2
    return f"{price:.{price_places}f}", f"{qty:.8f}"


# Burst sizes: most taker orders fill one maker, some sweep several levels in one match.
_BURST_WEIGHTS: tuple[tuple[int, float], ...] = ((1, 0.70), (2, 0.10), (3, 0.07), (4, 0.05), (5, 0.04),
                                                 (6, 0.02), (8, 0.02))
_MEAN_BURST = sum(size * weight for size, weight in _BURST_WEIGHTS)


class TapeGenerator:
    """One symbol's deterministic trade flow.

    ``next_burst()`` returns the trades of the next taker order (one to eight fills with the same
    timestamp, same side, prices walking away from the touch) and advances the schedule. Bursts
    arrive as a Poisson process whose rate makes ``trades_per_second`` the long-run average; about
    one gap in ten is shorter than a millisecond, so distinct orders share a millisecond too.
    """

    def __init__(self, instrument: Instrument, seed: int, trades_per_second: float, start_us: int) -> None:
        self.instrument = instrument
        self._rng = random.Random(f"{seed}:{instrument.exchange}:{instrument.symbol}")
        self._bursts_per_second = trades_per_second / _MEAN_BURST
        self._price_ticks = int(instrument.ref_price / instrument.tick)
        # Typical order notional around 500 units of the quote, spread wide (log-normal).
        self._qty_mu = math.log(max(1.0, 500.0 / float(instrument.ref_price * instrument.lot)))
        # Ids grow with time, as a real venue's do across its restarts: a later simulator run (a new
        # `ticklake up --simulate`) continues above what an earlier one produced, instead of reusing
        # ids ticklake already stored. Ten thousand ids a second per symbol is room enough.
        self._next_id = start_us // 100 + self._rng.randint(0, 99)
        self._next_ts_us = start_us + self._gap_us()

    @property
    def next_ts_us(self) -> int:
        """When the next burst happens (before truncation to the venue's resolution)."""
        return self._next_ts_us

    def shift(self, delta_us: int) -> None:
        """Move the schedule later (after a pause) without drawing from the generator."""
        self._next_ts_us += delta_us

    def _gap_us(self) -> int:
        if self._rng.random() < 0.1:
            return self._rng.randint(1, 999)
        return max(1, int(self._rng.expovariate(self._bursts_per_second) * 1_000_000))

    def _burst_size(self) -> int:
        pick = self._rng.random()
        for size, weight in _BURST_WEIGHTS:
            pick -= weight
            if pick <= 0:
                return size
        return 1

    def next_burst(self) -> list[TapeTrade]:
        inst = self.instrument
        rng = self._rng
        resolution = inst.time_resolution_us
        ts_us = self._next_ts_us // resolution * resolution
        side: TakerSide = "buy" if rng.random() < 0.5 else "sell"
        # Random walk between orders; a sweep then moves one way only, as a taker eats levels.
        self._price_ticks = max(1, self._price_ticks + int(rng.gauss(0, 3)))
        direction = 1 if side == "buy" else -1
        trades: list[TapeTrade] = []
        for _ in range(self._burst_size()):
            lots = max(1, int(math.exp(rng.gauss(self._qty_mu, 1.2))))
            price_text, qty_text = inst.render(self._price_ticks * inst.tick, lots * inst.lot, inst)
            trades.append(TapeTrade(inst.symbol, self._next_id, price_text, qty_text, side, ts_us))
            self._next_id += 1
            if rng.random() < 0.5:
                self._price_ticks = max(1, self._price_ticks + direction)
        self._next_ts_us += self._gap_us()
        return trades


class SymbolTape:
    """A generator plus everything it has produced so far (the oracle)."""

    def __init__(self, generator: TapeGenerator) -> None:
        self.generator = generator
        self.trades: list[TapeTrade] = []

    def generate_until(self, now_us: int) -> list[list[TapeTrade]]:
        """Every burst scheduled at or before ``now_us``, appended to the tape, in order."""
        bursts: list[list[TapeTrade]] = []
        while self.generator.next_ts_us <= now_us:
            burst = self.generator.next_burst()
            self.trades.extend(burst)
            bursts.append(burst)
        return bursts

    def last(self, count: int) -> list[TapeTrade]:
        return self.trades[-count:] if count > 0 else []
