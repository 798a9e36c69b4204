"""A real Kafka-protocol broker on loopback for the distributed tests.

Neither Redpanda nor Apache Kafka installs from this machine's registries; noida-db (a PyPI wheel
with one binary that speaks the Kafka protocol, among others) does, and passed every check the
distributed mode relies on (shared notes, stack.md). The test extras install it; tests start the
bundled binary itself (the pip wrapper's kill leaves the broker running), each with a fresh data
directory, and stop it afterwards. Set KAFKA_BOOTSTRAP to run against a broker of your own
(Redpanda, Kafka) instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ticklake.bench.broker import noida_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Broker:
    """One broker process: ``bootstrap`` is its address; ``restart`` keeps its data."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self) -> Broker:
        binary = noida_binary()
        if binary is None:
            pytest.skip("no Kafka-protocol broker: install the test extras (noida-db) or set KAFKA_BOOTSTRAP")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "start", "--only", "kafka", "--kafka-port", str(self.port),
                 "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the broker exited: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.03)
        raise RuntimeError("the broker did not open its port in 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def remove(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.data_dir, ignore_errors=True)
