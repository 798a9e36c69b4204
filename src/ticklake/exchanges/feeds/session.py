"""One open WebSocket connection: its state (``Session``) and the picows callbacks that fill it
(``FeedListener``).

The callbacks run inside the socket read path, so they only stamp, number and queue each complete
message (reassembling fragments), answer pings, and stop reading when the queue is past
``HIGH_WATER``; everything else happens in the connection's tasks (``connection.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from ticklake.exchanges.gaps import SequenceTracker

log = logging.getLogger("ticklake.feeds")

Direction = Literal["recv", "sent"]

HIGH_WATER = 10_000  # queued frames before the socket stops being read
LOW_WATER = 1_000
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a reassembled message; picows caps single frames at 10 MiB
QueueItem = tuple[int, int, bytes]  # frame_seq, received_us, payload


class Session:
    """The state of one open WebSocket connection, shared by the picows callbacks and the tasks."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self.queue: asyncio.Queue[QueueItem | None] = asyncio.Queue()
        self.transport: WSTransport | None = None
        self.frame_seq = 0
        # Any frame, pings included (the watchdog's clock; it starts at the session's creation).
        self.opened_mono = self.last_frame_mono = time.monotonic()
        self.last_frame_at: float | None = None
        self.paused = False
        self.end_reason = ""
        self.prompt_reconnect = False  # the venue asked us to reconnect (shutdown notice)
        self.sequence = SequenceTracker()
        self.first_frame = asyncio.Event()  # set by the first data frame: the connection carries data
        self.replace_wanted = asyncio.Event()  # set when the connection should be replaced (with overlap)
        self.replace_reason = ""
        self.replace_at: float | None = None  # monotonic time of a planned replacement (maximum age)
        self.control_sent: deque[float] = deque()  # monotonic send times of our control messages
        self.keepalive_sent_mono = 0.0  # monotonic time of the last keep-alive message we sent
        self.fragments: list[bytes] | None = None  # a fragmented message being reassembled
        self.fragments_size = 0
        # Set when the feed records: appends to the feed's buffer (file I/O happens in a task).
        self.record: Callable[[int, str | bytes, Direction], None] | None = None

    @property
    def heard_mono(self) -> float | None:
        """Monotonic time of the newest frame of any kind received; None before the first."""
        return self.last_frame_mono if self.last_frame_mono > self.opened_mono else None

    def disconnect(self, reason: str, graceful: bool = True) -> None:
        if not self.end_reason:
            self.end_reason = reason
        if self.transport is not None:
            self.transport.disconnect(graceful=graceful)

    def want_replacement(self, reason: str, prompt: bool = False) -> None:
        if not self.replace_wanted.is_set():
            self.replace_reason = reason
            self.prompt_reconnect = self.prompt_reconnect or prompt
            self.replace_wanted.set()

    def control_wait(self, per_second: int | None, now: float) -> float:
        """Seconds until another control message fits in the venue's per-second budget (0: now)."""
        sent = self.control_sent
        while sent and sent[0] <= now - 1.0:
            sent.popleft()
        if per_second is None or len(sent) < per_second:
            return 0.0
        return sent[len(sent) - per_second] + 1.0 - now


class FeedListener(WSListener):
    """picows callbacks: keep them minimal, they run inside the socket read path."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._session.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        session = self._session
        try:
            session.last_frame_mono = time.monotonic()
            msg_type = frame.msg_type
            if msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY:
                if frame.fin:
                    self._deliver(transport, frame.get_payload_as_bytes())
                else:  # the first fragment of a message (picows hands over frames, not messages)
                    session.fragments = [frame.get_payload_as_bytes()]
                    session.fragments_size = frame.payload_size
            elif msg_type == WSMsgType.CONTINUATION:
                self._continue(transport, frame)
            elif msg_type == WSMsgType.PING:
                # Binance: "send a pong with a copy of ping's payload as soon as possible".
                payload = frame.get_payload_as_bytes()
                transport.send_pong(payload)
                session.control_sent.append(time.monotonic())  # pongs count against the message budget
                # The pong is recorded as a sent frame (the recording format lists pongs there);
                # the ping is not: received lines are replayed into the mappers as data frames.
                if session.record is not None:
                    session.record(time.time_ns() // 1000, payload, "sent")
            elif msg_type == WSMsgType.CLOSE:
                self._on_close(transport, frame)
        except Exception:  # nothing a server sends may take the feed down
            log.exception("%s: error handling a frame", session.conn_id)
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()

    def _deliver(self, transport: WSTransport, payload: bytes) -> None:
        """One complete message: stamp it, number it, queue it for the publishing task."""
        session = self._session
        received_us = time.time_ns() // 1000
        session.last_frame_at = received_us / 1_000_000
        session.frame_seq += 1
        session.queue.put_nowait((session.frame_seq, received_us, payload))
        if session.frame_seq == 1:
            session.first_frame.set()
        if session.record is not None:
            session.record(received_us, payload, "recv")
        if not session.paused and session.queue.qsize() >= HIGH_WATER:
            session.paused = True
            transport.underlying_transport.pause_reading()

    def _continue(self, transport: WSTransport, frame: WSFrame) -> None:
        session = self._session
        fragments = session.fragments
        if fragments is None:
            log.warning("%s: continuation frame without a message to continue; ignored", session.conn_id)
            return
        fragments.append(frame.get_payload_as_bytes())
        session.fragments_size += frame.payload_size
        if session.fragments_size > MAX_MESSAGE_BYTES:
            session.fragments = None
            session.disconnect(f"fragmented message over {MAX_MESSAGE_BYTES} bytes", graceful=False)
        elif frame.fin:
            session.fragments = None
            self._deliver(transport, b"".join(fragments))

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        session = self._session
        code = frame.get_close_code()
        number = int(code.value) if isinstance(code, WSCloseCode) else int(code)
        reason = frame.get_close_reason() if frame.payload_size > 2 else ""
        if not session.end_reason:
            session.end_reason = f"closed by venue: {number} {reason}".rstrip()
        transport.send_close(code)  # complete the closing handshake, then drop the socket
        transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._session.queue.put_nowait(None)
