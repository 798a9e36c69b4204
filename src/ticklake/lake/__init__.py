"""The Iceberg cold tier: every layer of the warm tier, kept for good (docs/lake.md).

Imports ``warehouse`` (it reads what ClickHouse holds), never ``api``.
"""
