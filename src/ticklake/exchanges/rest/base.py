"""What a venue's REST backfill module implements, and what it hands back.

A fetcher knows one venue's trades endpoint: how to ask for the trades with ids ``first .. last`` of a
market, page by page, and where to stop. It does not decide what to keep or publish (the backfill
does: ids in the span, not older than the look-back) and it does no rate limiting (the client does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NamedTuple, Protocol

from ticklake.exchanges.rest.client import RestClient
from ticklake.model import Trade


class Span(NamedTuple):
    """Trade ids ``first .. last`` (inclusive) of one market, to fetch."""

    native_symbol: str
    first: int
    last: int
    start_us: int  # exchange time of trade ``first - 1``: no trade of the span is older (0: unknown)
    cutoff_us: int  # the look-back: trades older than this are not wanted
    end_us: int  # exchange time of trade ``last + 1``: no trade of the span is newer

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class TradePage(NamedTuple):
    """One REST answer: its body as received, and its trades in id order (all of them, in span or not)."""

    body: str
    received_us: int
    frame_seq: int
    trades: tuple[Trade, ...]


class FrameStamp(Protocol):
    """Numbers the pages of one REST "connection" (conn_id), like a WebSocket's frames."""

    conn_id: str

    def next_frame(self) -> int: ...


class TradeFetcher(Protocol):
    exchange: str
    page_size: int

    def pages(self, client: RestClient, span: Span, stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """The pages covering ``span`` (from ``span.cutoff_us`` on, when that is later), in the order
        the venue pages them; no page at all when nothing of the span is wanted (all of it older than
        the look-back). Stops early only when the venue has nothing more: the caller compares the
        highest id served with ``span.last`` to tell a venue lagging behind its stream. Raises
        ``RestError`` when the venue cannot be asked."""
        ...


class RecentTradeFetcher(Protocol):
    """A fetcher that can also ask for a market's most recent trades, with no id or time to start from:
    what the backfill of a venue whose ids do not count a market's trades uses (``Backfill.catch_up``).
    Bybit's ``recent-trade`` serves nothing else; another venue with a "latest trades" endpoint would
    implement it the same way."""

    exchange: str
    page_size: int  # the most trades one answer holds: a full page may not reach back far enough

    async def recent(self, client: RestClient, native_symbol: str, stamp: FrameStamp) -> TradePage:
        """The venue's most recent trades of ``native_symbol`` (at most ``page_size``), oldest first.
        Raises ``RestError`` when the venue cannot be asked."""
        ...


class WindowTradeFetcher(Protocol):
    """A fetcher that can ask for every trade of a market from a point in time on: what the backfill of a
    venue whose ids are global (or sequenced per connection only) uses to reconcile after a break
    (``Backfill.catch_up``; completeness "reconciled-by-time"). Bitstamp (``time=minute|hour|day``),
    Gemini (``timestamp``) and Bitfinex (``start``/``end``) implement it."""

    exchange: str
    page_size: int
    # How far back the venue's REST API serves trades, in seconds (Bitstamp: one day); None: as far as the
    # feed's look-back (``feed.backfill_lookback_s``) asks. A break older than this is counted as not
    # reconciled (``ticklake_feed_backfill_short_total``).
    reach_s: float | None

    def since(self, client: RestClient, native_symbol: str, start_us: int,
              stamp: FrameStamp) -> AsyncIterator[TradePage]:
        """Every trade of ``native_symbol`` with exchange time ``>= start_us`` up to now, oldest first,
        page by page (each page's trades oldest first; a page may repeat trades of the one before at the
        boundary, and may hold trades older than ``start_us`` where the venue cannot start later: the
        backfill drops both). Raises ``RestError`` when the venue cannot be asked."""
        ...


class VenueFetcher(Protocol):
    """A venue's fetcher class (``FETCHER`` in its folder's ``rest.py``): made with ``page_size`` rows
    per request, or the venue's largest page."""

    def __call__(self, page_size: int = ...) -> TradeFetcher: ...

