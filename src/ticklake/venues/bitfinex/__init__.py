"""Bitfinex spot (API v2): static facts (the code is in this folder's mapper, feed, rest and simulated modules).

Docs relied on (docs.bitfinex.com, checked for this venue): "WebSocket General" (``ws-general``: URL,
info/error events, ping, heartbeats, array lengths), "Public Channels" (``ws-public``: 25 channels per
connection, 20 connections a minute), "Trades" (``ws-public-trades``: snapshot, ``te``/``tu``),
"Configuration" (``ws-config``: the ``conf`` flags, ``SEQ_ALL`` = 65536), "Trades" REST
(``rest-public-trades``: ``/v2/trades/{symbol}/hist``, 15 requests a minute). What was unclear, and what
was decided, is in docs/architecture.md ("Bitfinex") and in the module docstrings.

Symbols. A trading pair is ``t`` + BASE + QUOTE when both are three letters (``tBTCUSD``), else
``t`` + BASE + ``:`` + QUOTE (``tAVAX:USD``, ``tBTC:CNHT``; the pair list ``conf/pub:list:pair:exchange``
shows both forms, and no three-by-three pair with a colon). Bitfinex names some assets its own way;
the two that matter for spot quotes are mapped both ways: Tether USDT is ``UST`` (``tBTCUST`` is
BTC/USDT) and USD Coin is ``UDC``. Other Bitfinex-only names (``IOT``, ``DSH``, ``MNA``...) are left
as Bitfinex spells them: configure ``IOT/USD`` to get ``tIOTUSD``. Funding symbols (``fUSD``) and
perpetual contracts (``tBTCF0:USTF0``: assets ending in ``F0``) are not spot markets and not in the form.
"""

from __future__ import annotations

from typing import Final

from ticklake.symbols import canonical
from ticklake.venues.facts import Venue

# Canonical asset -> Bitfinex's name for it, where they differ (and the names are spot quotes).
ALIASES: Final[dict[str, str]] = {"USDT": "UST", "USDC": "UDC"}
_CANONICAL: Final[dict[str, str]] = {name: asset for asset, name in ALIASES.items()}
PAIR_PREFIX: Final = "t"  # a trading pair; "f" is a funding currency
DERIVATIVE_SUFFIX: Final = "F0"  # perpetual contracts' assets: BTCF0:USTF0


def native_of(base: str, quote: str) -> str:
    """``tBTCUSD``, ``tBTCUST`` (BTC/USDT), ``tAVAX:USD``: the colon only when an asset is not three letters."""
    name, quote_name = ALIASES.get(base, base), ALIASES.get(quote, quote)
    if len(name) == 3 and len(quote_name) == 3:
        return f"{PAIR_PREFIX}{name}{quote_name}"
    return f"{PAIR_PREFIX}{name}:{quote_name}"


def _split(pair: str) -> tuple[str, str] | None:
    """BASE and QUOTE of a pair without its prefix (any case), by the rule ``native_of`` spells them."""
    base, colon, quote = pair.partition(":")
    if colon:
        if ":" in quote or (len(base) == 3 and len(quote) == 3):  # a 3x3 pair is never spelled with a colon
            return None
        return base, quote
    return (pair[:3], pair[3:]) if len(pair) == 6 else None


def canonical_of(native: str) -> str:
    """The canonical symbol of an upper-cased native symbol (``TBTCUST`` -> ``BTC/USDT``); "" otherwise."""
    if not native.startswith(PAIR_PREFIX.upper()):
        return ""
    parts = _split(native[1:])
    if parts is None or not parts[0] or not parts[1]:
        return ""
    base, quote = parts
    return canonical(_CANONICAL.get(base, base), _CANONICAL.get(quote, quote))


def _is_asset(text: str) -> bool:
    # isalnum(): no control character, space or punctuation; upper(): no lower case; F0: a contract.
    return text.isascii() and text.isalnum() and text == text.upper() and not text.endswith(DERIVATIVE_SUFFIX)


def native_form(native: str) -> bool:
    """Whether ``native`` is spelled as Bitfinex spells a spot pair (``tBTCUSD``, ``tAVAX:USD``): exactly
    the spellings ``native_of`` produces, so no market gets a second native symbol (``tBTC:USD``)."""
    if type(native) is not str or not native.startswith(PAIR_PREFIX):
        return False
    parts = _split(native[1:])
    return parts is not None and _is_asset(parts[0]) and _is_asset(parts[1])


VENUE: Final = Venue(
    name="bitfinex",
    # Bitfinex's most traded spot pairs: USD is its main quote; the two majors against Tether too.
    default_symbols=("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "LTC/USD", "ADA/USD", "DOT/USD", "LINK/USD",
                     "BTC/USDT", "ETH/USDT"),
    native_of=native_of,
    canonical_of=canonical_of,
    separator=":",  # only for long asset names; native_form says the whole rule
    # Trade ids are shared by all pairs, so a lost trade cannot be seen by id: every break (new
    # connection, unreadable frame, a jump in the SEQ_ALL numbers) is reconciled over REST by time,
    # which reaches back as far as wanted (rest.py).
    completeness="reconciled-by-time",
    recording_names=("BITFINEX",),
    ids_count_trades=False,
    native_form=native_form,
)
