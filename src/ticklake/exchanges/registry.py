"""The code of each registered venue (``ticklake.venues.NAMES``), found by convention in its folder.

``ticklake/venues/<name>/`` holds ``mapper.py`` (``parse_frame``, ``parse_rest_trades``), ``feed.py``
(``FEED``) and ``rest.py`` (``FETCHER``); nothing here names a venue, so a new folder needs no line
in this module. Modules are imported on first use: a process that never backfills never imports a
fetcher, and importing this module imports no venue code (the feed modules import the realtime feed,
which imports this module).
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from ticklake.venues import venue

if TYPE_CHECKING:
    from ticklake.exchanges.feeds.realtimefeed import RealtimeFeed
    from ticklake.exchanges.rest.base import VenueFetcher


@functools.cache
def part(exchange: str, module: str) -> ModuleType:
    """Module ``module`` of ``exchange``'s folder; ValueError for an unregistered venue."""
    venue(exchange)
    return importlib.import_module(f"ticklake.venues.{exchange}.{module}")


def mapper(exchange: str) -> ModuleType:
    """The venue's pure mapper module."""
    return part(exchange, "mapper")


def feed_class(exchange: str) -> type[RealtimeFeed]:
    feed: type[RealtimeFeed] = part(exchange, "feed").FEED
    return feed


def fetcher_class(exchange: str) -> VenueFetcher:
    fetcher: VenueFetcher = part(exchange, "rest").FETCHER
    return fetcher
