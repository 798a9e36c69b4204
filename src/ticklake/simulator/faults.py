"""Scriptable faults: what a venue has been told to do wrong next, and the chaos schedule.

``VenueFaults`` is the pending state of one venue, consulted by ``VenueServer`` at three places:

* where the tape turns into bursts (``visible``): ``skip_next`` hides trades from every socket;
* where a trade frame is sent (``VenueServer.send_trade_frame``): ``malformed_next`` garbles it,
  ``duplicate_next`` sends it twice, ``reorder_next`` holds it and releases the held frames shuffled;
* where a REST request is answered (``take_rest_failure``): ``rest_fail_next`` refuses it.

A "trade frame" is one live trade message as the venue publishes it (Binance: one trade; Kraken: one
burst; Coinbase: one 250 ms batch of one product), whatever the number of connections receiving it;
snapshots, acknowledgements and heartbeats are not trade frames. A frame nobody receives consumes no
fault. Everything random draws from a ``random.Random`` seeded from the simulator's seed and the
venue, so a run with the same seed and the same script does the same thing.

``Chaos`` applies a random mix of the non-permanent faults over time, each logged as a ``FaultEvent``
in ``Simulator.fault_log``, so a failing test can say which fault broke it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ticklake.simulator.tape import TapeTrade

if TYPE_CHECKING:
    from ticklake.simulator.server import Simulator

log = logging.getLogger(__name__)

GARBLE_MARK: Final = "\ufffd\ufffd"
"""Ends every garbled frame (a frame cut in half, then two replacement characters)."""


def garble(text: str) -> str:
    """A frame as a broken relay might deliver it: the first half, then junk. Never valid JSON."""
    return text[: len(text) // 2] + GARBLE_MARK


@dataclass(frozen=True)
class FaultEvent:
    """One fault applied to the simulator: when, where, what, with which parameters, by whom."""

    at: float  # time.time()
    exchange: str
    fault: str  # the Simulator method: "skip_next", "stall", ...
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "script"  # "script" (a test called it) or "chaos"

    def __str__(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at)) + f".{int(self.at * 1000) % 1000:03d}"
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{stamp} {self.exchange} {self.fault}({args}) [{self.source}]"


Frame = list[tuple[Any, str]]  # (connection, text) pairs of one trade frame, in sending order


class VenueFaults:
    """The pending faults of one venue and what they did (ids hidden from sockets, per symbol)."""

    def __init__(self, exchange: str, seed: int) -> None:
        self.rng = random.Random(f"{seed}:{exchange}:faults")
        self.skip: dict[str, int] = {}  # symbol -> trades still to hide
        self.skipped: dict[str, list[int]] = {}  # symbol -> ids hidden by skip_next (never on a socket)
        self.garbled: dict[str, list[int]] = {}  # symbol -> ids whose frame was garbled
        self.duplicate = 0
        self.malformed = 0
        self.reorder = 0
        self.reorder_max_hold_s = 1.0
        self.held: list[Frame] = []
        self.held_since = 0.0
        self.rest_failures: deque[tuple[int, float | None]] = deque()  # (status, Retry-After seconds)

    # --- skip_next -------------------------------------------------------------------------------
    def visible(self, symbol: str, burst: list[TapeTrade]) -> list[TapeTrade]:
        """The trades of a new burst that sockets may carry (``skip_next`` takes the others)."""
        pending = self.skip.get(symbol, 0)
        if not pending:
            return burst
        hidden = burst[:pending]
        self.skip[symbol] = pending - len(hidden)
        self.skipped.setdefault(symbol, []).extend(t.trade_id for t in hidden)
        return burst[len(hidden):]

    def hidden_ids(self, symbol: str) -> set[int]:
        return set(self.skipped.get(symbol, ()))

    # --- trade frames ----------------------------------------------------------------------------
    def shape(self, symbol: str, trades: Sequence[TapeTrade], frame: Frame) -> Frame | None:
        """Apply malformed/duplicate/reorder to one trade frame: the (connection, text) pairs to send
        now, or None when the frame is held for reordering."""
        if self.malformed:
            self.malformed -= 1
            frame = [(conn, garble(text)) for conn, text in frame]
            self.garbled.setdefault(symbol, []).extend(t.trade_id for t in trades)
        if self.duplicate:
            self.duplicate -= 1
            frame = [pair for pair in frame for pair in (pair, pair)]
        if self.reorder:
            self.reorder -= 1
            if not self.held:
                self.held_since = time.monotonic()
            self.held.append(frame)
            return None
        return frame

    def release_due(self, now: float, force: bool = False) -> list[Frame]:
        """The held frames, shuffled, once all ``reorder_next`` frames are in or the hold timed out."""
        if not self.held:
            return []
        if not force and self.reorder and now - self.held_since < self.reorder_max_hold_s:
            return []
        frames, self.held = self.held, []
        self.reorder = 0
        order = list(range(len(frames)))
        self.rng.shuffle(order)
        if len(order) > 1 and order == sorted(order):
            order.reverse()  # a shuffle that changes nothing would not test anything
        return [frames[i] for i in order]

    # --- REST ------------------------------------------------------------------------------------
    def take_rest_failure(self) -> tuple[int, float | None] | None:
        return self.rest_failures.popleft() if self.rest_failures else None

    def clear(self) -> None:
        """Forget every pending fault (held frames are for the caller to release first)."""
        self.skip.clear()
        self.duplicate = self.malformed = self.reorder = 0
        self.rest_failures.clear()


# Faults chaos may apply. Permanent settings (connection age, REST rate limits) are not among them.
CHAOS_FAULTS: Final = ("skip_next", "stall", "duplicate_next", "reorder_next", "malformed_next",
                       "drop_connections", "shutdown", "rest_fail_next")


class Chaos:
    """A background task applying a random fault every ``mean_interval_s`` on average (exponential
    gaps), to a random venue among ``exchanges``. Deterministic in its choices given ``seed``."""

    def __init__(self, sim: Simulator, seed: int, mean_interval_s: float, exchanges: Sequence[str],
                 faults: Sequence[str] = CHAOS_FAULTS, max_stall_s: float = 1.0) -> None:
        unknown = set(faults) - set(CHAOS_FAULTS)
        if unknown:
            raise ValueError(f"chaos cannot apply: {', '.join(sorted(unknown))}")
        if mean_interval_s <= 0 or not exchanges or not faults:
            raise ValueError("chaos needs a positive mean interval, venues and faults")
        self.sim = sim
        self.rng = random.Random(f"chaos:{seed}")
        self.mean_interval_s = mean_interval_s
        self.exchanges = sorted(exchanges)
        self.faults = list(faults)
        self.max_stall_s = max_stall_s
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="sim-chaos")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def next_fault(self) -> tuple[float, str, str, dict[str, Any]]:
        """(delay, exchange, fault, parameters) of the next fault: the whole random draw."""
        rng = self.rng
        delay = rng.expovariate(1 / self.mean_interval_s)
        exchange = rng.choice(self.exchanges)
        fault = rng.choice(self.faults)
        params: dict[str, Any] = {}
        if fault == "skip_next":
            params = {"symbol": rng.choice(sorted(self.sim.venues[exchange].tapes)), "count": rng.randint(1, 5)}
        elif fault == "stall":
            params = {"seconds": round(rng.uniform(0.1, self.max_stall_s), 3)}
        elif fault in ("duplicate_next", "reorder_next", "malformed_next"):
            params = {"count": rng.randint(1, 3)}
        elif fault == "rest_fail_next":
            params = {"count": rng.randint(1, 2), "status": rng.choice((429, 500, 503)), "retry_after_s": 1}
        return delay, exchange, fault, params

    async def _run(self) -> None:
        while True:
            delay, exchange, fault, params = self.next_fault()
            await asyncio.sleep(delay)
            try:
                self.sim._apply(exchange, fault, params, source="chaos")
            except Exception:  # a fault that cannot apply right now must not end the chaos
                log.exception("chaos: %s on %s failed", fault, exchange)
