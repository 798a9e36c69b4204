"""Dump what the warm tier holds, table by table, in each cold table's exact schema, for tests that run
ticklake as processes (the embedded warehouse can be opened by one process at a time, and the test
process already holds the session's).

    python -m tests.lake.warm_dump DATA_DIR OUT_DIR   writes OUT_DIR/<table>.arrow for every cold table
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

from ticklake.lake.arrow_cast import to_lake
from ticklake.lake.tables import TABLES
from ticklake.settings import Settings
from ticklake.warehouse.client import open_client
from ticklake.warehouse.sql import query

EVERYTHING = {"lower": 0, "upper": 2**32 - 1}


def dump(data_dir: Path, out: Path) -> None:
    settings = Settings(data_dir=data_dir)
    client = open_client(settings.resolved_warehouse_url, settings.database, settings.warehouse_max_memory_bytes)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for name, spec in TABLES.items():
            if spec.timeframe is None:
                parameters: dict[str, int] = EVERYTHING
            else:  # every candle: the caller keeps those of the windows the cold table says are closed
                parameters = {"timeframe": spec.timeframe, "closed_from": 0, "closed_before": 2**32 - 1,
                              "changed_after": 2**32 - 1}
            rows = to_lake(client.query_arrow(query(spec.select_query), parameters=parameters), spec)
            with pa.OSFile(str(out / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
                writer.write_table(rows)
    finally:
        client.close()


if __name__ == "__main__":
    dump(Path(sys.argv[1]), Path(sys.argv[2]))
