"""The simulated server of each registered venue: ``SERVER`` in ``ticklake/venues/<name>/simulated.py``.

Found by convention, like the venue's other code (``ticklake.exchanges.registry``), so a new venue
folder needs no line here. Only the simulator imports these modules: production code never does.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from ticklake.venues import venue

if TYPE_CHECKING:
    from ticklake.simulator.venue import VenueServer


@functools.cache
def server_class(exchange: str) -> type[VenueServer[Any]]:
    """The venue's simulated server; ValueError for an unregistered venue."""
    venue(exchange)
    server: type[VenueServer[Any]] = importlib.import_module(f"ticklake.venues.{exchange}.simulated").SERVER
    return server

