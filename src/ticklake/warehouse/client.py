"""Opening the warehouse: embedded chdb (``chdb:///path``) or a ClickHouse server (``http(s)://``).

Both give the same clickhouse-connect client, so every other module has one code path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from ticklake.ops.redact import mask_url
from ticklake.warehouse.sql import query

# Settings every session needs: deduplicate retried batches through the view chain too
# (stack.md, pitfall 1), and never rewrite existing parts when retention changes at start.
SESSION_SETTINGS: dict[str, str | int] = {
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "materialize_ttl_after_modify": 0,
}


class WarehouseUnreachableError(RuntimeError):
    """The ClickHouse server named by ``warehouse_url`` cannot be reached or refuses us."""


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost cause: "Connection refused", not urllib3's retry story."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def is_embedded(url: str) -> bool:
    return url.startswith("chdb:")


def open_client(url: str, database: str, max_memory_bytes: int = 1_000_000_000,
                settings: dict[str, Any] | None = None) -> Client:
    """A client bound to ``database``, which is created (Atomic engine) when missing, with
    ``settings`` for each of its queries (a reading connection's limits: pool.py).

    chdb's ``default`` database uses the Overlay engine; ticklake always works in its own. Opening
    another client in a process that already has the embedded engine open gives another handle to it.
    """
    # ClickHouse and chdb interpret DateTime without a zone in the process zone: pin UTC.
    os.environ.setdefault("TZ", "UTC")
    if is_embedded(url):
        path = urlparse(url).path
        Path(path).mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(
            dsn=url, chdb_options={"max_server_memory_usage": max_memory_bytes}, settings=SESSION_SETTINGS
        )
        client.command(query("create_database"), parameters={"database": database})
    else:
        try:  # (the first call is the first contact: a wrong URL fails here, with a message that says so)
            # No server-side session: the API's concurrent requests would otherwise collide on its lock.
            client = clickhouse_connect.get_client(dsn=url, settings=SESSION_SETTINGS, autogenerate_session_id=False)
            client.command(query("create_database"), parameters={"database": database})
        except (OperationalError, DatabaseError) as exc:
            raise WarehouseUnreachableError(
                f"cannot use the warehouse at {mask_url(url)}: {_root_cause(exc)}; check warehouse_url "
                "(TICKLAKE_WAREHOUSE_URL), that the ClickHouse server runs and accepts this user") from None
    client.database = database
    for name, value in (settings or {}).items():
        client.set_client_setting(name, value)
    return client
