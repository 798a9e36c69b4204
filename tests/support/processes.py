"""Running ticklake as a user does, for the tests that need real processes: the repository, free
ports, an environment per data directory, the CLI, a running process and its stop, polling a URL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ticklake.drill.services import free_port  # the one definition; test modules take it from here
from ticklake.venues import NAMES

REPO = Path(__file__).resolve().parents[2]

UPPER_NAMES = tuple(name.upper() for name in NAMES)  # as environment variables spell them


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKLAKE_")}
    env.update({"TICKLAKE_DATA_DIR": str(data_dir), "TZ": "UTC", "TICKLAKE_SIMULATOR__SEED": "7",
                "PYTHONPATH": str(REPO / "src"), **extra})
    return env


def ticklake(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ticklake.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@contextmanager
def running(*args: str, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ticklake.cli", *args], cwd=REPO, text=True,
                               env={**env, "TICKLAKE_API__PORT": str(port)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def wait_for(url: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5)
            if check(last):
                return last
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{url} never satisfied the check; last: {getattr(last, 'text', last)}")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


async def until_answering(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as api:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                await api.get("/health")
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the API never answered")
