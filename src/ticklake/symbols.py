"""Canonical symbols (``BASE/QUOTE``); each venue's native spelling is in its folder (``ticklake.venues``).

Canonical assets follow the common names: Kraken's XBT is BTC and XDG is DOGE. Quote assets are
never merged: BTC/USDT and BTC/USD are different markets.
"""

from __future__ import annotations

ASSET_ALIASES: dict[str, str] = {"XBT": "BTC", "XXBT": "BTC", "XDG": "DOGE", "XXDG": "DOGE", "ZUSD": "USD",
                                 "ZEUR": "EUR", "XETH": "ETH"}


def canonical_asset(asset: str) -> str:
    asset = asset.upper()
    return ASSET_ALIASES.get(asset, asset)


def canonical(base: str, quote: str) -> str:
    return f"{canonical_asset(base)}/{canonical_asset(quote)}"


def split_canonical(symbol: str) -> tuple[str, str]:
    """``"BTC/USDT"`` -> ``("BTC", "USDT")``; raises ValueError on anything else."""
    parts = symbol.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1] or not all(p.isalnum() for p in parts):
        raise ValueError(f"not a BASE/QUOTE symbol: {symbol!r}")
    return parts[0].upper(), parts[1].upper()
