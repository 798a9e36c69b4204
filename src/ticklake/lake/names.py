"""The cold tables' names, in offload order, for code that must not import Iceberg: the platform
process schedules the cold tier's jobs by name and leaves Iceberg to the worker (worker.py).
tables.py defines each table under these names, and checks at import that it defines no other."""

from __future__ import annotations

from ticklake.warehouse.reader import TIMEFRAMES


def gold_table_name(label: str) -> str:
    return f"gold_ohlcv_{label}"


COLD_TABLES: tuple[str, ...] = ("raw_frames", "bronze_trades", "silver_trades", "dead_letters", "bus_dead_letters",
                                *(gold_table_name(label) for label in TIMEFRAMES))
