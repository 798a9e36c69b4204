"""Canonical symbols (``BASE/QUOTE``) and each venue's native spelling of them.

Canonical assets follow the common names: Kraken's XBT is BTC and XDG is DOGE. Quote assets are
never merged: BTC/USDT and BTC/USD are different markets.
"""

from __future__ import annotations

ASSET_ALIASES: dict[str, str] = {"XBT": "BTC", "XXBT": "BTC", "XDG": "DOGE", "XXDG": "DOGE", "ZUSD": "USD",
                                 "ZEUR": "EUR", "XETH": "ETH"}

# Binance native symbols have no separator: split on the longest known quote asset suffix.
BINANCE_QUOTES: tuple[str, ...] = tuple(sorted(
    ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USD", "DAI", "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "BRL",
     "JPY", "AUD", "RUB", "UAH", "PAX", "USDP", "XRP", "DOGE", "TRX", "BIDR", "IDRT", "NGN", "ZAR", "PLN",
     "RON", "ARS", "MXN", "COP", "CZK", "VAI", "BVND", "AEUR", "EURI"),
    key=len, reverse=True))

DEFAULT_SYMBOLS: dict[str, tuple[str, ...]] = {
    "binance": ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "BNB/USDT", "DOGE/USDT", "ADA/USDT",
                "AVAX/USDT", "LINK/USDT", "LTC/USDT"),
    "kraken": ("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "LINK/USD", "LTC/USD",
               "BTC/EUR", "ETH/EUR"),
    "coinbase": ("BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "DOGE/USD", "ADA/USD", "AVAX/USD", "LINK/USD",
                 "LTC/USD", "BTC/USDT"),
}


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


def to_native(exchange: str, symbol: str) -> str:
    """The venue's spelling of a canonical symbol, as its WebSocket API expects it."""
    base, quote = split_canonical(symbol)
    if exchange == "binance":
        return f"{base}{quote}"  # streams want it lowercase; frames carry it uppercase
    if exchange == "kraken":
        return f"{base}/{quote}"  # WebSocket v2 uses BTC, not XBT
    if exchange == "coinbase":
        return f"{base}-{quote}"
    raise ValueError(f"unknown exchange: {exchange!r}")


def from_native(exchange: str, native: str) -> str:
    """The canonical symbol of a venue's native symbol; ``""`` when it cannot be mapped."""
    native = native.upper()
    if exchange == "binance":
        for quote in BINANCE_QUOTES:
            if native.endswith(quote) and len(native) > len(quote):
                return canonical(native[: -len(quote)], quote)
        return ""
    separator = {"kraken": "/", "coinbase": "-"}.get(exchange)
    if separator is None:
        return ""
    parts = native.split(separator)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return ""
    return canonical(parts[0], parts[1])
