"""The ``venues`` settings table is made from the venue registry: one entry per registered venue."""

from __future__ import annotations

import pytest

from ticklake.settings import ConfigError, Settings, VenueSettings, VenuesSettings, load_settings
from ticklake.venues import NAMES, VENUES


def test_every_registered_venue_is_configured_with_its_default_symbols() -> None:
    venues = Settings().venues
    assert list(venues.enabled()) == list(NAMES)
    for name in NAMES:
        assert venues[name].symbols == list(VENUES[name].default_symbols)


@pytest.mark.parametrize("name", NAMES)
def test_setting_one_field_keeps_the_venues_default_symbols(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"TICKLAKE_VENUES__{name.upper()}__WS_URL", "ws://127.0.0.1:1")
    venue = Settings().venues[name]
    assert (venue.ws_url, venue.symbols) == ("ws://127.0.0.1:1", list(VENUES[name].default_symbols))
    assert VenuesSettings(**{name: VenueSettings(rest_url="http://x")})[name].symbols == \
        list(VENUES[name].default_symbols)


def test_symbols_from_the_environment_replace_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    name = NAMES[0]
    monkeypatch.setenv(f"TICKLAKE_VENUES__{name.upper()}__SYMBOLS", '["btc/usdt"]')
    assert Settings().venues[name].symbols == ["BTC/USDT"]


def test_an_unknown_venue_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown venue 'nowhere'; known: " + ", ".join(NAMES)):
        load_settings(venues={"nowhere": {"symbols": ["BTC/USD"]}})


@pytest.mark.parametrize("name", NAMES)
def test_each_venue_has_the_rest_reads_its_completeness_guarantee_needs(name: str) -> None:
    """The guarantee /v1/symbols states is the one the feed can keep: a venue whose ids count its trades
    fetches gaps by id; one reconciled by time reads windows of time (``since``, with how far back it
    reaches); a best-effort one its most recent page (``recent``)."""
    from ticklake.exchanges.rest import fetcher_for

    venue, fetcher = VENUES[name], fetcher_for(name)
    if venue.completeness == "id-sequenced":
        assert venue.ids_count_trades and callable(getattr(fetcher, "pages", None))
    elif venue.completeness == "reconciled-by-time":
        assert not venue.ids_count_trades and callable(getattr(fetcher, "since", None))
        assert hasattr(fetcher, "reach_s")
    else:
        assert not venue.ids_count_trades and callable(getattr(fetcher, "recent", None))
