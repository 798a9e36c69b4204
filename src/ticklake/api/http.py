"""The HTTP/1.1 server protocol the API runs under uvicorn: uvicorn's h11 one, with oversized requests
answered as HTTP says.

uvicorn answers a request line or header block beyond h11's buffer limit (16 kB) with a bare 400 and
closes the socket at once; a client still sending its 1 MB URL then gets a TCP reset, often before it
can read even that. Here the answer is 414 (URI Too Long) when the request line alone did not fit, 431
(Request Header Fields Too Large) when the headers did not, in the API's error shape; the rest of what
the client sends is read and dropped for a moment, and the connection closed after, so that the answer
reaches it.
"""

from __future__ import annotations

import asyncio

import orjson
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.protocols.http.h11_impl import H11Protocol

from ticklake.api.responses import error_body

DRAIN_S = 2.0  # how long the rest of an oversized request is read and dropped before the socket closes
_TOO_LARGE = {
    414: ("URI Too Long", "the request line is longer than this API accepts (16 kB); send fewer or shorter "
                          "query parameters"),
    431: ("Request Header Fields Too Large", "the request's headers are larger than this API accepts (16 kB "
                                             "with the request line)"),
}


class BoundedH11Protocol(H11Protocol):
    """Pass as ``uvicorn.Config(..., http=BoundedH11Protocol)``."""

    _draining = False

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return  # the rest of a request already answered
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        pending, _closed = self.conn.trailing_data  # what h11 could not parse: the request so far
        limit = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        if len(pending) <= limit:
            super().send_400_response(msg)  # malformed, not too large
            return
        status = 414 if b"\r\n" not in pending else 431
        reason, message = _TOO_LARGE[status]
        body = orjson.dumps(error_body(message))
        head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                "connection: close\r\n\r\n").encode()
        # (Written by hand: h11's state machine is in its error state and would refuse to send.)
        self.transport.write(head + body)
        self._draining = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(DRAIN_S, self.transport.close)
        self.logger.info("refused a request: %s (%d)", reason, status)

