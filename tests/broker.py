"""A real Kafka-protocol broker on loopback for the distributed tests.

Neither Redpanda nor Apache Kafka installs from this machine's registries; noida-db (a PyPI wheel
with one binary that speaks the Kafka protocol, among others) does, and passed every check the
distributed mode relies on (shared notes, stack.md). The test extras install it; tests start the
bundled binary itself (the pip wrapper's kill leaves the broker running), each with a fresh data
directory, and stop it afterwards. Set KAFKA_BOOTSTRAP to run against a broker of your own
(Redpanda, Kafka) instead.

The process handling is ``ticklake.drill.services.Broker`` (also what ``ticklake drill`` runs); here
a missing binary skips the test instead of failing it.
"""

from __future__ import annotations

import pytest

from ticklake.drill import services

__all__ = ["Broker"]


class Broker(services.Broker):
    """One broker process: ``bootstrap`` is its address; ``restart`` keeps its data."""

    def start(self) -> Broker:
        try:
            super().start()
        except services.MissingBinaryError:
            pytest.skip("no Kafka-protocol broker: install the test extras (noida-db) or set KAFKA_BOOTSTRAP")
        return self
