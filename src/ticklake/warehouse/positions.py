"""Where the warehouse stands on each Kafka topic partition (distributed mode).

Every batch stores its rows with the bus position they came from, and, after every other insert,
the next offset to read per partition (``bus_positions``). An ingester that is assigned a partition
starts there. Rows whose position lies at or beyond it belong to a batch a crash cut short: the
messages up to the highest such position are marked ``replayed`` and completed rather than stored
again (``WarehouseWriter.plan_messages``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from ticklake.bus.base import PartitionKey, Position
from ticklake.warehouse.sql import query

# Rows of a cut-short batch were stored after the last positions of their partition; the margin
# covers clock resolution (stored_at is in seconds) with room to spare.
_MARGIN = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_positions(client: Client, keys: list[PartitionKey]) -> dict[PartitionKey, Position]:
    if not keys:
        return {}
    topics = sorted({topic for topic, _ in keys})
    rows = client.query(query("bus_positions"), parameters={"topics": topics}).result_rows
    stored = {(topic, int(partition)): (int(next_offset), stored_at)
              for topic, partition, next_offset, stored_at in rows}
    if all(key in stored for key in keys):
        oldest = min(stored[key][1] for key in keys)
        since = (oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)) - _MARGIN
    else:
        since = _EPOCH
    rows = client.query(query("bus_written_through"), parameters={"topics": topics, "since": since}).result_rows
    through = {(topic, int(partition)): int(offset) for topic, partition, offset in rows}
    return {key: Position(stored[key][0] if key in stored else None, through.get(key, -1)) for key in keys}
