"""Opaque cursors, sealed: for /v1/trades the last row's (exchange time, trade id); for the live
stream the last trade's place in commit order (the batch's ``committed_us``, then time and id).

The checksum is keyed with a constant, so it detects garbled and hand-edited cursors and cursors of
another market; it is not a secret (a forged cursor could only skip within public data). A constant
key keeps cursors valid across restarts and across workers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct

_KEY = b"ticklake/v1/trades-cursor"
_POSITION = struct.Struct(">qQ")  # exchange time in microseconds, trade id
_MAC_BYTES = 8
# base64url without padding of position + checksum (24 bytes); b64decode alone would skip stray characters.
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{32}")


class BadCursor(ValueError):
    pass


def _mac(exchange: str, symbol: str, position: bytes) -> bytes:
    market = f"{exchange}\x00{symbol}\x00".encode()
    return hashlib.blake2b(market + position, key=_KEY, digest_size=_MAC_BYTES).digest()


def encode_cursor(exchange: str, symbol: str, ts_us: int, trade_id: int) -> str:
    position = _POSITION.pack(ts_us, trade_id)
    return base64.urlsafe_b64encode(position + _mac(exchange, symbol, position)).decode().rstrip("=")


def decode_cursor(exchange: str, symbol: str, cursor: str) -> tuple[int, int]:
    """``(ts_us, trade_id)`` of the row the previous page ended with; BadCursor when not one of ours."""
    if not _CURSOR_TEXT.fullmatch(cursor):
        raise BadCursor("not a cursor returned by this API")
    try:
        raw = base64.urlsafe_b64decode(cursor)
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits only valid text
        raise BadCursor("not a cursor returned by this API") from None
    position, mac = raw[: _POSITION.size], raw[_POSITION.size:]
    if not hmac.compare_digest(mac, _mac(exchange, symbol, position)):
        raise BadCursor("cursor is damaged or belongs to another exchange/symbol")
    ts_us, trade_id = _POSITION.unpack(position)
    if ts_us < 0:
        raise BadCursor("not a cursor returned by this API")
    return ts_us, trade_id


_STREAM_KEY = b"ticklake/v1/stream-cursor"
_STREAM_POSITION = struct.Struct(">QqQ")  # committed_us, exchange time in microseconds, trade id
_STREAM_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url without padding of 24 + 8 bytes


def _stream_mac(exchange: str, symbol: str, position: bytes) -> bytes:
    market = f"{exchange}\x00{symbol}\x00".encode()
    return hashlib.blake2b(market + position, key=_STREAM_KEY, digest_size=_MAC_BYTES).digest()


def encode_stream_cursor(exchange: str, symbol: str, committed_us: int, ts_us: int, trade_id: int) -> str:
    position = _STREAM_POSITION.pack(committed_us, ts_us, trade_id)
    return base64.urlsafe_b64encode(position + _stream_mac(exchange, symbol, position)).decode().rstrip("=")


def is_stream_cursor(cursor: str) -> bool:
    return bool(_STREAM_TEXT.fullmatch(cursor))


def decode_stream_cursor(exchange: str, symbol: str, cursor: str) -> tuple[int, int, int]:
    """``(committed_us, ts_us, trade_id)`` of the last trade a stream client was sent."""
    if not _STREAM_TEXT.fullmatch(cursor):
        raise BadCursor("not a cursor returned by this API")
    raw = base64.urlsafe_b64decode(cursor + "=")
    position, mac = raw[: _STREAM_POSITION.size], raw[_STREAM_POSITION.size:]
    if not hmac.compare_digest(mac, _stream_mac(exchange, symbol, position)):
        raise BadCursor("cursor is damaged or belongs to another exchange/symbol")
    committed_us, ts_us, trade_id = _STREAM_POSITION.unpack(position)
    return committed_us, ts_us, trade_id
