"""``python -m ticklake.simulator --port P``: every venue's WebSocket and REST ports are its own."""

from __future__ import annotations

from ticklake.simulator.__main__ import _parse_args, pinned_ports
from ticklake.venues import NAMES


def test_the_three_first_venues_keep_their_documented_ports() -> None:
    ports, rest_ports = pinned_ports(9000, ("binance", "kraken", "coinbase"))
    assert ports == {"binance": 9000, "kraken": 9001, "coinbase": 9002}
    assert rest_ports == {"binance": 9003, "kraken": 9004, "coinbase": 9005}


def test_a_fourth_venue_gets_a_port_of_its_own() -> None:
    """The bug of issue 13: the 4th venue's WebSocket got the first venue's REST port (P+3)."""
    names = ("binance", "kraken", "coinbase", "fourth")
    ports, rest_ports = pinned_ports(9000, names)
    assert ports["fourth"] not in rest_ports.values()
    assert sorted([*ports.values(), *rest_ports.values()]) == list(range(9000, 9000 + 2 * len(names)))


def test_every_registered_venue_gets_two_distinct_ports() -> None:
    ports, rest_ports = pinned_ports(_parse_args(["--port", "20000"]).port)
    assert set(ports) == set(rest_ports) == set(NAMES)
    assert len({*ports.values(), *rest_ports.values()}) == 2 * len(NAMES)
