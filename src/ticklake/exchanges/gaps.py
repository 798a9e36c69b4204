"""Gap detection: which trade ids of a market are missing, and which message sequence numbers.

Pure: no I/O, no clock, no metrics. The feed feeds it trades and acts on what it reports.

**Trade ids.** Every venue ticklake follows numbers a market's trades 1, 2, 3 ... without holes
(Binance ``t``, Kraken v2 ``trade_id``, Coinbase ``trade_id``), so per (exchange, native symbol) the
tracker keeps the highest id seen and the *pending* ranges below it that were never delivered:

* ``id == last + 1``: the tape goes on (the hot path: one dict lookup, one compare, one store);
* ``id > last + 1``: ids ``last+1 .. id-1`` are missing: a new gap, reported once;
* ``id <= last``: a repeat (reconnect snapshot, duplicated frame, overlapping connection, backfill of
  ids the socket delivered late) or a late delivery of a pending id, which shrinks or closes its gap.

Invariant, for every market (the property tests check it): the pending ranges and the distinct ids
delivered since tracking started are disjoint, and together they are exactly the ids from the start
up to the highest id seen. The start is the first trade seen, or, after a restart, the newest *stored*
trade (a ``ResumePoint``, see ``resume_from``), so the downtime is a gap like any other.

Ids below the start are never tracked: they are repeats of what was stored before.

**Holes found elsewhere.** A trade the feed delivered can still go missing further on (a broker that
lost acknowledged messages, a crash between layers, a bug). Whoever finds such a hole, in what the
broker holds or in what the warehouse stored, hands it back with ``reopen``: its ids are pending again
and the backfill fetches them, unless the backfill already gave them up (``abandon`` remembers the
most recent lost ranges, so a hole that cannot be recovered is asked for and counted once).

**Sequence numbers.** Coinbase stamps each message of a connection with ``sequence_num`` 0, 1, 2 ...;
a jump means messages were lost on that connection (``SequenceTracker``). Trade-id gaps, not
sequence gaps, drive backfill: a lost heartbeat loses no trade, and a lost trade shows in the ids.

**Global ids.** Where ids are shared by all markets (Bitstamp, Gemini, Bitfinex, Bybit spot), no gap
shows in them; a venue reconciled by time re-reads windows of its REST trades instead, and
``SeenTrades`` remembers which ids of each market it already holds, so a window publishes only the
trades the socket did not deliver.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import NamedTuple, Protocol

from ticklake.model import ResumePoint, Trade


class _Point(Protocol):
    """The newest trade of a market: a ``Trade``, or the ``ResumePoint`` tracking started from."""

    @property
    def trade_id(self) -> int: ...

    @property
    def ts_us(self) -> int: ...


class Gap(NamedTuple):
    """Trade ids ``first .. last`` (inclusive) of one market, found missing when trade ``last + 1`` arrived."""

    native_symbol: str
    first: int
    last: int
    before_ts_us: int  # exchange time of trade ``first - 1``: no missing trade is older
    after_ts_us: int  # exchange time of trade ``last + 1``, the trade that revealed the gap

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class GapTracker:
    """Missing trade ids per native symbol of one venue (see the module docstring)."""

    def __init__(self, resume: Mapping[str, ResumePoint] | None = None) -> None:
        # native symbol -> newest trade (highest id); a ResumePoint until the first trade arrives.
        self._newest: dict[str, _Point] = dict(resume or {})
        # native symbol -> pending ranges [first, last], sorted and disjoint. Usually empty.
        self._pending: dict[str, list[list[int]]] = {}
        # native symbol -> ranges given up as unrecoverable, newest last (at most _LOST_KEPT).
        self._lost: dict[str, list[tuple[int, int]]] = {}

    # --- the hot path --------------------------------------------------------------------------
    def observe(self, trades: Sequence[Trade]) -> list[Gap] | None:
        """Take a frame's trades; return the gaps they opened, or None (the usual). Backfilled trades
        go to ``fill`` instead (they cannot open a gap, and their count matters)."""
        newest = self._newest
        if len(trades) == 1:  # most frames (every Binance @trade frame): no loop to set up
            trade = trades[0]
            native = trade.native_symbol
            try:  # a subscript is cheaper than .get(); the KeyError happens once per market
                if trade.trade_id == newest[native].trade_id + 1:
                    newest[native] = trade
                    return None
            except KeyError:
                pass
        opened: list[Gap] | None = None
        for trade in trades:
            native = trade.native_symbol
            try:
                if trade.trade_id == newest[native].trade_id + 1:
                    newest[native] = trade
                    continue
            except KeyError:
                pass
            gap = self._irregular(native, newest.get(native), trade)
            if gap is not None:
                if opened is None:
                    opened = []
                opened.append(gap)
        return opened

    def _irregular(self, native: str, prev: _Point | None, trade: Trade) -> Gap | None:
        trade_id = trade.trade_id
        if prev is None:  # the first trade of this market: tracking starts here
            self._newest[native] = trade
            return None
        if trade_id > prev.trade_id:
            self._newest[native] = trade
            gap = Gap(native, prev.trade_id + 1, trade_id - 1, prev.ts_us, trade.ts_us)
            self._pending.setdefault(native, []).append([gap.first, gap.last])
            return gap
        self._deliver(native, trade_id)
        return None

    # --- pending ranges ------------------------------------------------------------------------
    def _deliver(self, native: str, trade_id: int) -> bool:
        """A late or backfilled id: take it out of its pending range; False when it was not pending."""
        ranges = self._pending.get(native)
        if not ranges:
            return False
        index = bisect_right(ranges, [trade_id, _MAX]) - 1
        if index < 0:
            return False
        first, last = ranges[index]
        if trade_id > last:
            return False
        if first == last:
            del ranges[index]
        elif trade_id == first:
            ranges[index][0] = first + 1
        elif trade_id == last:
            ranges[index][1] = last - 1
        else:  # split the range around the delivered id
            ranges[index][1] = trade_id - 1
            ranges.insert(index + 1, [trade_id + 1, last])
        if not ranges:
            del self._pending[native]
        return True

    def reopen(self, native: str, first: int, last: int) -> list[tuple[int, int]]:
        """Ids ``first .. last`` of ``native`` were found missing after delivery: make them pending
        again. Returns the ranges newly pending (ids already pending, or given up, are left out)."""
        wanted = [(first, last)]
        for lost_first, lost_last in self._lost.get(native, ()):
            wanted = [piece for a, b in wanted for piece in minus(a, b, lost_first, lost_last)]
        for pending_first, pending_last in self._pending.get(native, ()):
            wanted = [piece for a, b in wanted for piece in minus(a, b, pending_first, pending_last)]
        if wanted:
            ranges = self._pending.setdefault(native, [])
            ranges.extend([a, b] for a, b in wanted)
            ranges.sort()
        return wanted

    def fill(self, trades: Iterable[Trade]) -> int:
        """Take backfilled trades; returns how many of them were pending (the rest were repeats)."""
        filled = 0
        for trade in trades:
            filled += self._deliver(trade.native_symbol, trade.trade_id)
        return filled

    def pending(self, native: str, first: int | None = None, last: int | None = None) -> list[tuple[int, int]]:
        """The pending ranges of ``native``, clipped to ``first .. last`` when given."""
        low = first if first is not None else -1
        high = last if last is not None else _MAX
        return [(max(a, low), min(b, high)) for a, b in self._pending.get(native, ()) if b >= low and a <= high]

    def missing(self, native: str, first: int | None = None, last: int | None = None) -> int:
        """How many ids of ``native`` are pending (within ``first .. last`` when given)."""
        return sum(b - a + 1 for a, b in self.pending(native, first, last))

    def abandon(self, native: str, first: int, last: int) -> list[tuple[int, int]]:
        """Give up on the pending ids within ``first .. last`` (they cannot be recovered); returns them."""
        lost = self.pending(native, first, last)
        if not lost:
            return lost
        kept: list[list[int]] = []
        for a, b in self._pending[native]:
            if a < first:
                kept.append([a, min(b, first - 1)])
            if b > last:
                kept.append([max(a, last + 1), b])
        if kept:
            self._pending[native] = kept
        else:
            del self._pending[native]
        given_up = self._lost.setdefault(native, [])
        given_up.extend(lost)
        del given_up[:-_LOST_KEPT]
        return lost

    def newest(self, native: str) -> tuple[int, int] | None:
        """(id, exchange time) of the newest trade of ``native``, or None before the first."""
        point = self._newest.get(native)
        return None if point is None else (point.trade_id, point.ts_us)


_MAX = 2**64  # above every trade id (ids fit UInt64)
_LOST_KEPT = 1000  # unrecoverable ranges remembered per market (reopen skips them)


def minus(first: int, last: int, cut_first: int, cut_last: int) -> list[tuple[int, int]]:
    """The range ``first .. last`` without ``cut_first .. cut_last``: zero, one or two ranges."""
    if cut_last < first or cut_first > last:
        return [(first, last)]
    pieces = []
    if first < cut_first:
        pieces.append((first, cut_first - 1))
    if cut_last < last:
        pieces.append((cut_last + 1, last))
    return pieces


class SequenceTracker:
    """Per-connection message sequence numbers (Coinbase ``sequence_num``): counts what was skipped."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def observe(self, sequence: int) -> int:
        """How many sequence numbers were skipped before ``sequence`` (0: in order, a repeat, or the first)."""
        last = self.last
        if last is None or sequence > last:
            self.last = sequence
        if last is None or sequence <= last + 1:
            return 0
        return sequence - last - 1


def holes(points: Mapping[int, int], newest: tuple[int, int]) -> list[Gap]:
    """The ids missing among ``points`` (trade id -> exchange time µs, what a broker or the warehouse
    holds of one market) up to ``newest`` (id, exchange time): between consecutive ids, and above the
    highest one when ``newest`` is higher. Holes below the lowest id given are not seen. The gaps
    carry no symbol: the caller knows the market."""
    found: list[Gap] = []
    ids = sorted(i for i in points if i <= newest[0])
    for previous, trade_id in pairwise(ids):
        if trade_id > previous + 1:
            found.append(Gap("", previous + 1, trade_id - 1, points[previous], points[trade_id]))
    if ids and newest[0] > ids[-1]:
        found.append(Gap("", ids[-1] + 1, newest[0], points[ids[-1]], newest[1]))
    return found


class Resume(NamedTuple):
    """Where a market's feed resumes after a restart: tracking starts after ``point``, the newest trade
    held (stored, or on the broker), so the downtime shows as a gap; ``holes`` are the ids missing
    below it (a backfill cut short by a stop, messages a broker lost), to backfill as well."""

    point: ResumePoint
    holes: list[Gap]


def resume_from(points: Iterable[tuple[int, int]], native: str = "") -> Resume | None:
    """The ``Resume`` of one market (``native``) from its newest held trades: ``points`` are (trade id,
    exchange time µs), in any order, repeats allowed. Holes older than the trades given are not seen."""
    by_id = dict(points)
    if not by_id:
        return None
    newest = max(by_id)
    return Resume(ResumePoint(newest, by_id[newest]),
                  [gap._replace(native_symbol=native) for gap in holes(by_id, (newest, by_id[newest]))])


class SeenTrades:
    """Per market (native symbol), the ids of the trades held, with their exchange times, for about the last
    ``keep_us`` of exchange time: what a reconciliation window must not publish again. Older ids are
    forgotten (a window reaching further back republishes them, and the warehouse drops the repeats by id).
    Ids arrive roughly in time order, so the oldest are dropped from the front, measured back from the
    trade being added (it runs for every trade of such a venue: one dict store is all it costs)."""

    __slots__ = ("_ids", "keep_us")

    def __init__(self, keep_us: int) -> None:
        self.keep_us = keep_us
        self._ids: dict[str, dict[int, int]] = {}  # native -> {trade id: exchange time µs}, in arrival order

    def add(self, native: str, trade_id: int, ts_us: int) -> None:
        ids = self._ids.get(native)
        if ids is None:
            ids = self._ids[native] = {}
        ids[trade_id] = ts_us
        if len(ids) & 1023 == 0:  # every 1,024 ids: forget, from the oldest on, what fell out of the window
            self._forget(ids, ts_us - self.keep_us)

    @staticmethod
    def _forget(ids: dict[int, int], horizon: int) -> None:
        stale = []
        for old, held_ts in ids.items():
            if held_ts >= horizon:
                break
            stale.append(old)
        for old in stale:
            del ids[old]

    def holds(self, native: str, trade_id: int) -> bool:
        ids = self._ids.get(native)
        return ids is not None and trade_id in ids

    def size(self, native: str) -> int:
        return len(self._ids.get(native, ()))
