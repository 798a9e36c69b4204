"""A feed's recording buffer: frames received and messages sent, kept in memory by the socket
callbacks and written to the recorder by a task every 0.25 s, so that file I/O never runs inside
the socket read path."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, runtime_checkable

from ticklake.exchanges.feeds.session import Direction

log = logging.getLogger("ticklake.feeds")


@runtime_checkable
class SessionRecorder(Protocol):
    """A session recorder: ``ticklake.exchanges.recording.SessionWriter`` (pass it directly)."""

    def write_frame(self, exchange: str, conn_id: str, t_us: int, payload: str | bytes, *,
                    direction: Direction = "recv", url: str = "") -> None: ...

    def flush(self) -> None: ...


FrameRecorder = SessionRecorder

_Record = tuple[str, str, int, str | bytes, Direction]  # conn_id, url, t_us, payload, direction


class RecordBuffer:
    """What one feed's connections record, on its way to ``recorder``."""

    def __init__(self, exchange: str, recorder: SessionRecorder) -> None:
        self.exchange = exchange
        self.recorder = recorder
        self._records: list[_Record] = []

    def record(self, conn_id: str, url: str, t_us: int, payload: str | bytes, direction: Direction) -> None:
        self._records.append((conn_id, url, t_us, payload, direction))

    async def run(self) -> None:
        # The recorder writes files synchronously: batch that out of the socket callbacks.
        while True:
            await asyncio.sleep(0.25)
            self.write()

    def write(self) -> None:
        records, self._records = self._records, []
        if not records:
            return
        try:
            for conn_id, url, t_us, payload, direction in records:
                self.recorder.write_frame(self.exchange, conn_id, t_us, payload, direction=direction, url=url)
            self.recorder.flush()
        except Exception:  # a full disk must not stop the feed; the bus still gets every frame
            log.exception("%s: recording %d frames failed", self.exchange, len(records))
