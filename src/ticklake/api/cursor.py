"""Opaque cursors, sealed: for /v1/trades the last row's (exchange time, trade id); for the live
stream the last trade's place in commit order (the batch's ``committed_us``, then time and id).

A cursor carries its position and a keyed checksum (BLAKE2b) of market and position. The key is a
secret of the installation (``api.cursor_secret``, or a file generated in the data directory on
first start, see ``load_cursor_secret``), so only this API's cursors are accepted: a hand-made one,
a garbled one or one of another market is a 400, and a position no real row can have (before 1970
or after 2100) is refused even under a valid checksum. The key survives restarts, and every API
process of a fleet given the same ``api.cursor_secret`` accepts the others' cursors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import struct
from datetime import timedelta
from pathlib import Path

from ticklake.warehouse.reader import EPOCH, FAR_FUTURE

log = logging.getLogger(__name__)

_POSITION = struct.Struct(">qQ")  # exchange time in microseconds, trade id
_STREAM_POSITION = struct.Struct(">QqQ")  # committed_us, exchange time in microseconds, trade id
_MAC_BYTES = 8
# base64url without padding of position + checksum; b64decode alone would skip stray characters.
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]{32}")  # 16 + 8 bytes
_STREAM_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # 24 + 8 bytes
_LATEST_US = (FAR_FUTURE - EPOCH) // timedelta(microseconds=1)
SECRET_FILE = "api_cursor_secret"
NOT_OURS = "not a cursor returned by this API"


class BadCursor(ValueError):
    pass


class CursorSeal:
    """Makes and checks cursors with one installation's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a cursor key needs at least 16 bytes")
        # One key per kind of cursor, so that neither kind can pass for the other.
        self._trades_key = hashlib.blake2b(key, person=b"tl-trades-cur", digest_size=32).digest()
        self._stream_key = hashlib.blake2b(key, person=b"tl-stream-cur", digest_size=32).digest()

    @classmethod
    def random(cls) -> CursorSeal:
        """A seal for one process's lifetime (tests, benchmarks, an app built without a secret)."""
        return cls(secrets.token_bytes(32))

    def encode(self, exchange: str, symbol: str, ts_us: int, trade_id: int) -> str:
        position = _POSITION.pack(ts_us, trade_id)
        return _text(position + _mac(self._trades_key, exchange, symbol, position))

    def decode(self, exchange: str, symbol: str, cursor: str) -> tuple[int, int]:
        """``(ts_us, trade_id)`` of the row the previous page ended with; BadCursor when not one of ours."""
        position = self._open(self._trades_key, _CURSOR_TEXT, exchange, symbol, cursor, _POSITION.size)
        ts_us, trade_id = _POSITION.unpack(position)
        _check_time(ts_us)
        return ts_us, trade_id

    def encode_stream(self, exchange: str, symbol: str, committed_us: int, ts_us: int, trade_id: int) -> str:
        position = _STREAM_POSITION.pack(committed_us, ts_us, trade_id)
        return _text(position + _mac(self._stream_key, exchange, symbol, position))

    def decode_stream(self, exchange: str, symbol: str, cursor: str) -> tuple[int, int, int]:
        """``(committed_us, ts_us, trade_id)`` of the last trade a stream client was sent."""
        position = self._open(self._stream_key, _STREAM_TEXT, exchange, symbol, cursor, _STREAM_POSITION.size)
        committed_us, ts_us, trade_id = _STREAM_POSITION.unpack(position)
        _check_time(ts_us)
        _check_time(committed_us)
        return committed_us, ts_us, trade_id

    @staticmethod
    def _open(key: bytes, pattern: re.Pattern[str], exchange: str, symbol: str, cursor: str, size: int) -> bytes:
        if not pattern.fullmatch(cursor):
            raise BadCursor(NOT_OURS)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position, mac = raw[:size], raw[size:]
        if not hmac.compare_digest(mac, _mac(key, exchange, symbol, position)):
            raise BadCursor("cursor is damaged, was not made by this installation, or belongs to another "
                            "exchange/symbol")
        return position


def is_stream_cursor(cursor: str) -> bool:
    return bool(_STREAM_TEXT.fullmatch(cursor))


def _mac(key: bytes, exchange: str, symbol: str, position: bytes) -> bytes:
    market = f"{exchange}\x00{symbol}\x00".encode()
    return hashlib.blake2b(market + position, key=key, digest_size=_MAC_BYTES).digest()


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _check_time(us: int) -> None:
    if not 0 <= us <= _LATEST_US:  # (a valid checksum on an impossible position: a leaked key or a bug)
        raise BadCursor(NOT_OURS)


def load_cursor_secret(configured: str, data_dir: Path) -> CursorSeal:
    """The installation's seal: ``configured`` (``api.cursor_secret``) when set, for a fleet of API
    processes that must accept each other's cursors; else a key kept in ``<data_dir>/api_cursor_secret``,
    made on first start (readable by its owner only)."""
    if configured:
        if len(configured.encode()) < 16:
            raise ValueError("api.cursor_secret must be at least 16 bytes; `python -c 'import secrets; "
                             "print(secrets.token_hex(32))'` makes one")
        return CursorSeal(configured.encode())
    path = data_dir / SECRET_FILE
    try:
        return CursorSeal(bytes.fromhex(path.read_text().strip()))
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise ValueError(f"{path} does not hold a cursor key (hex, 32 bytes or more): {exc}; delete it to "
                         "make a new one (cursors handed out before then stop working)") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    partial = path.with_suffix(".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key.hex() + "\n")
    try:
        os.link(partial, path)  # fails if another process made one meanwhile: then theirs is the key
    except FileExistsError:
        os.unlink(partial)
        return CursorSeal(bytes.fromhex(path.read_text().strip()))
    os.unlink(partial)
    log.info("made the API's cursor key in %s", path)
    return CursorSeal(key)
