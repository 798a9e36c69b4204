"""An app on a real uvicorn on loopback, as ``ticklake`` serves it (same HTTP protocol class)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette

from ticklake.api.http import BoundedH11Protocol


def serve(app: Starlette) -> tuple[str, Callable[[], None]]:
    """``app`` on a real uvicorn on 127.0.0.1 (ephemeral port): its URL and how to stop it."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", http=BoundedH11Protocol))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(5)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop
