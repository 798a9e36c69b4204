"""Realtime feeds: connections to the venues, feeding raw frames and trades to the bus.

    feeds = await run_feeds(settings, bus, resume=stored)   # one feed task per enabled venue
    feeds.statuses()                            # {"binance": FeedStatus(...), ...} for /health
    await feeds.stop()

``resume`` maps (exchange, native symbol) to the newest stored trade (``ResumePoint``): the downtime
since is backfilled from the venues' REST APIs, as far back as ``feed.backfill_lookback_s``. All
feeds share one ``RestClient`` (one connection pool, one rate limiter per venue).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ticklake.exchanges import registry
from ticklake.exchanges.feeds.backfilling import rest_base_url
from ticklake.exchanges.feeds.backoff import Backoff, backoff_delay
from ticklake.exchanges.feeds.realtimefeed import FeedState, FeedStatus, RealtimeFeed
from ticklake.exchanges.feeds.recordbuffer import FrameRecorder, SessionRecorder
from ticklake.exchanges.gaps import Gap
from ticklake.exchanges.rest import RestClient
from ticklake.model import MessageSink, ResumePoint
from ticklake.settings import FeedSettings, Settings, VenueSettings

__all__ = [
    "Backoff",
    "FeedSet",
    "FeedState",
    "FeedStatus",
    "FrameRecorder",
    "RealtimeFeed",
    "SessionRecorder",
    "backoff_delay",
    "feed_for",
    "rest_url_for",
    "run_feeds",
]

log = logging.getLogger("ticklake.feeds")

def feed_for(exchange: str, symbols: Sequence[str], bus: MessageSink, feed_settings: FeedSettings | None = None,
             ws_url: str = "", **kwargs: Any) -> RealtimeFeed:
    """The realtime feed of ``exchange`` for canonical ``symbols``; ``ws_url`` overrides the venue's
    base URL (the simulator's ``ws_urls``). Extra keyword arguments go to ``RealtimeFeed``; the
    venue's ``RealtimeFeed`` subclass is ``FEED`` in ``ticklake/venues/<name>/feed.py``."""
    feed_class = registry.feed_class(exchange)
    return feed_class(symbols, bus, feed_settings, ws_url, **kwargs)


def rest_url_for(exchange: str, venue: VenueSettings) -> str:
    """The REST base URL the gaps of a configured venue are filled from ("" when none: see
    ``rest_base_url``)."""
    return rest_base_url(exchange, registry.feed_class(exchange).default_url, venue.ws_url, venue.rest_url)


class FeedSet:
    """The running feeds of ``run_feeds``."""

    def __init__(self, feeds: dict[str, RealtimeFeed], rest: RestClient | None = None) -> None:
        self.feeds = feeds
        self.rest = rest
        self._tasks = {name: asyncio.create_task(feed.run(), name=f"feed-{name}") for name, feed in feeds.items()}

    def statuses(self) -> dict[str, FeedStatus]:
        return {name: feed.status() for name, feed in self.feeds.items()}

    def newest(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(exchange, native symbol) -> (id, exchange time µs) of the newest trade each feed handed on."""
        newest = {}
        for name, feed in self.feeds.items():
            if not feed.ids_count_trades:  # no hole can be found by id in such a venue's trades
                continue
            for native in feed.natives:
                point = feed.gaps.newest(native)
                if point is not None:
                    newest[(name, native)] = point
        return newest

    def refill(self, exchange: str, gap: Gap, found_in: str) -> int:
        """Fill a hole found after delivery (``Backfill.refill``); returns how many ids were taken."""
        feed = self.feeds.get(exchange)
        if feed is None or not feed.ids_count_trades:  # ids shared by markets: a "hole" is no lost trade
            return 0
        return feed.backfill.refill(gap, found_in)

    async def stop(self) -> None:
        await asyncio.gather(*(feed.stop() for feed in self.feeds.values()))
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self.rest is not None:
            await self.rest.aclose()


async def run_feeds(settings: Settings, bus: MessageSink, recorder: FrameRecorder | None = None,
                    resume: Mapping[tuple[str, str], ResumePoint] | None = None) -> FeedSet:
    """Start one feed per enabled venue with symbols (``settings.venues``); returns at once.

    ``resume``: (exchange, native symbol) -> the newest stored trade of that market.
    """
    feeds: dict[str, RealtimeFeed] = {}
    enabled = {name: venue for name, venue in settings.venues.enabled().items() if venue.symbols}
    rest = RestClient(settings.feed, urls={name: venue.rest_url for name, venue in enabled.items()}) if enabled \
        else None
    for name, venue in settings.venues.enabled().items():
        if not venue.symbols:
            log.warning("%s: enabled but no symbols configured; not connecting", name)
            continue
        feeds[name] = feed_for(name, venue.symbols, bus, settings.feed, venue.ws_url, recorder=recorder,
                               resume=resume, rest=rest, rest_url=venue.rest_url)
    return FeedSet(feeds, rest)
