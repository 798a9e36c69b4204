"""Recorded WebSocket sessions: ticklake's own format (read and write) and cryptofeed's (read).

ticklake format (``*.tlrec``; ``*.tlrec.gz`` is the same, gzip-compressed)
------------------------------------------------------------------------
UTF-8 JSON lines, one frame per line, in the order the process saw them::

    {"v":1,"exchange":"kraken","conn_id":"kraken-1","url":"wss://ws.kraken.com/v2","dir":"sent",
     "t_us":1795658400000000,"payload":"{\\"method\\":\\"subscribe\\",...}"}
    {"v":1,"exchange":"kraken","conn_id":"kraken-1","url":"wss://ws.kraken.com/v2","dir":"recv",
     "t_us":1795658400012345,"payload":"{\\"channel\\":\\"heartbeat\\"}"}

* ``v``: format version, 1.
* ``exchange``: ticklake's venue name (``ticklake.venues.NAMES``).
* ``conn_id``: the connection the frame belongs to; one file may interleave several connections.
* ``url``: the WebSocket URL of that connection.
* ``dir``: ``"recv"`` (from the venue) or ``"sent"`` (to it: subscribe messages, pongs).
* ``t_us``: local clock when the frame was received or sent, microseconds since the epoch, UTC.
* ``payload``: the frame exactly as it went over the wire, as a JSON string. Text frames are
  stored as their text. A binary frame that is not valid UTF-8 is stored base64-encoded with
  ``"enc":"b64"`` added to the line, so no byte is ever lost or altered.

Readers ignore unknown keys, so later versions can add fields. A final line cut short by a crash
mid-write (no trailing newline, not valid JSON) is skipped; any other bad line is an error.

cryptofeed format (the 2021 recordings in ``shared/testdata/cryptofeed``)
------------------------------------------------------------------------
One file per connection, named like ``KRAKEN.ws.48.0``::

    <ws-url> <-> <epoch-seconds>                 connection opened
    <ws-url> <- <epoch-seconds>: <frame>         a frame the client sent
    <epoch-seconds>: <frame>                     a frame received
    <url> -> <epoch-seconds>: <body>             a REST response (``*.0`` files)

The venue comes from the file name (each venue's ``recording_names``: ``BINANCE``/``BINANCE_US`` ->
binance ...), else from the URL's host. The connection id is the file name (``#2``,
``#3``... appended if the file reopens the connection). Times are converted to µs from the text,
exactly (truncated).

``read_session(path)`` detects the format from the first line and yields ``RecordedFrame`` values.
"""

from __future__ import annotations

import base64
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Literal

import msgspec

from ticklake.exchanges.mappers.common import epoch_seconds_text_to_us
from ticklake.venues import VENUES

__all__ = [
    "FORMAT_VERSION",
    "RecordedFrame",
    "SessionWriter",
    "detect_format",
    "exchange_from_name",
    "read_cryptofeed",
    "read_session",
    "read_ticklake",
]

FORMAT_VERSION: Final = 1
Direction = Literal["recv", "sent"]


class RecordedFrame(msgspec.Struct, frozen=True):
    """One recorded frame. ``received_us`` is the local time it was received (or sent)."""

    exchange: str
    conn_id: str
    received_us: int
    payload: str | bytes  # text frames as str; binary frames that are not UTF-8 as bytes
    direction: Direction = "recv"
    url: str = ""


class _Line(msgspec.Struct, omit_defaults=True):
    """One line of the ticklake format (field names and order are the on-disk keys)."""

    v: int
    exchange: str
    conn_id: str
    url: str
    dir: Direction
    t_us: int
    payload: str
    enc: str = ""  # "b64" when payload is base64 of a binary frame; omitted otherwise


_encode_line: Final = msgspec.json.Encoder().encode
_decode_line: Final = msgspec.json.Decoder(_Line).decode


def _open_text(path: Path, mode: Literal["r", "w", "a"]) -> IO[str]:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.GzipFile(path, mode), encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


class SessionWriter:
    """Appends frames to a ticklake recording; use as a context manager or call ``close()``.

    Each frame is one line, written whole; ``flush()`` pushes buffered lines to the OS. Writing is
    synchronous file I/O: call it from a recorder task or thread, not from the socket's read loop.
    """

    def __init__(self, path: str | Path, *, append: bool = False) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = _open_text(self.path, "a" if append else "w")

    def write_frame(self, exchange: str, conn_id: str, t_us: int, payload: str | bytes, *,
                    direction: Direction = "recv", url: str = "") -> None:
        """Record one frame exactly as it went over the wire."""
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        enc = ""
        if isinstance(payload, bytes):
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                text = base64.b64encode(payload).decode("ascii")
                enc = "b64"
        else:
            text = payload
        line = _Line(v=FORMAT_VERSION, exchange=exchange, conn_id=conn_id, url=url, dir=direction, t_us=t_us,
                     payload=text, enc=enc)
        self._file.write(_encode_line(line).decode("utf-8") + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_ticklake(path: str | Path, *, include_sent: bool = False) -> Iterator[RecordedFrame]:
    """Frames of a ticklake recording in file order (received only, unless ``include_sent``)."""
    path = Path(path)
    with _open_text(path, "r") as file:
        for lineno, raw in enumerate(file, 1):
            if not raw.strip():
                continue
            try:
                line = _decode_line(raw)
            except msgspec.DecodeError as exc:
                if not raw.endswith("\n"):  # only the last line can lack one: cut short mid-write
                    return
                raise ValueError(f"{path}:{lineno}: not a ticklake frame line: {exc}") from None
            if line.dir == "sent" and not include_sent:
                continue
            payload: str | bytes = line.payload
            if line.enc == "b64":
                payload = base64.b64decode(line.payload)
            elif line.enc:
                raise ValueError(f"{path}:{lineno}: unknown payload encoding {line.enc!r}")
            yield RecordedFrame(line.exchange, line.conn_id, line.t_us, payload, line.dir, line.url)


def exchange_from_name(file_name: str, url: str = "") -> str:
    """ticklake's venue of a cryptofeed recording, from its file name (``Venue.recording_names``) or
    else its URL's host ("" if neither)."""
    prefix = file_name.split(".", 1)[0].upper()
    for venue in VENUES.values():
        if prefix in venue.recording_names:
            return venue.name
    host = url.split("://", 1)[-1].split("/", 1)[0].lower()
    for name in VENUES:
        if name in host:
            return name
    return ""


def read_cryptofeed(path: str | Path, *, include_sent: bool = False) -> Iterator[RecordedFrame]:
    """Frames of a cryptofeed recording: those received (and, with ``include_sent``, those sent).

    REST lines (``->``) are skipped: they are HTTP bodies, not WebSocket frames.
    """
    path = Path(path)
    url = ""
    exchange = exchange_from_name(path.name)
    conn_id = path.name
    opened = 0
    with open(path, encoding="utf-8", newline="\n") as file:
        for lineno, raw in enumerate(file, 1):
            line = raw.rstrip("\n")
            if not line:
                continue
            if line[0].isdigit():  # "<epoch>: <frame>" received
                stamp, sep, payload = line.partition(": ")
                if not sep:
                    raise ValueError(f"{path}:{lineno}: received line without ': '")
                yield RecordedFrame(exchange or exchange_from_name(path.name, url), conn_id,
                                    _epoch_us(stamp, path, lineno), payload, "recv", url)
                continue
            head, _, rest = line.partition(" ")
            arrow, _, tail = rest.partition(" ")
            if arrow == "<->":  # a connection opened
                url = head
                opened += 1
                conn_id = path.name if opened == 1 else f"{path.name}#{opened}"
                if not exchange:
                    exchange = exchange_from_name(path.name, url)
            elif arrow == "<-":  # a frame we sent
                stamp, sep, payload = tail.partition(": ")
                if not sep:
                    raise ValueError(f"{path}:{lineno}: sent line without ': '")
                if include_sent:
                    yield RecordedFrame(exchange or exchange_from_name(path.name, head), conn_id,
                                        _epoch_us(stamp, path, lineno), payload, "sent", head)
            elif arrow == "->":  # a REST response
                continue
            else:
                raise ValueError(f"{path}:{lineno}: not a cryptofeed recording line")


def _epoch_us(stamp: str, path: Path, lineno: int) -> int:
    try:
        return epoch_seconds_text_to_us(stamp)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: bad timestamp {stamp[:40]!r}") from None


Format = Literal["ticklake", "cryptofeed"]


def detect_format(path: str | Path) -> Format:
    """Which format a recording is in, from its first non-empty line; ``ValueError`` if neither."""
    path = Path(path)
    with _open_text(path, "r") as file:
        for raw in file:
            line = raw.strip()
            if not line:
                continue
            if line.startswith("{"):
                return "ticklake"
            head, _, rest = line.partition(" ")
            if rest.split(" ", 1)[0] in ("<->", "<-", "->") or (head.endswith(":") and head[0].isdigit()):
                return "cryptofeed"
            break
    raise ValueError(f"{path}: neither a ticklake nor a cryptofeed recording")


def read_session(path: str | Path, *, include_sent: bool = False) -> Iterator[RecordedFrame]:
    """Frames of a recording in either format (detected), received only unless ``include_sent``."""
    if detect_format(path) == "ticklake":
        return read_ticklake(path, include_sent=include_sent)
    return read_cryptofeed(path, include_sent=include_sent)
