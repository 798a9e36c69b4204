"""What the cold tier asks of the warm tier, and the two ways it gets there.

The offload and the audit read the warehouse with four calls: rows, an Arrow table, Arrow batches, and
an insert (the audit's results). ``WarmTier`` names them; a clickhouse-connect ``Client`` is one (the
``ticklake offload --once`` and ``ticklake audit`` commands pass theirs). Inside the platform the
warehouse belongs to the writer's thread (the embedded engine is used from one thread), so the cold
tier reaches it through :class:`RelayedWarehouse`: each call becomes a :class:`WarehouseCall`, which
the platform runs with :func:`run_call` on the warehouse thread and answers with plain bytes and rows.
The same call crosses a thread (``lake.worker = "thread"``) or a socket to the cold-tier worker
process (``"process"``, worker.py) unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pyarrow as pa
from clickhouse_connect.driver.client import Client

Parameters = dict[str, Any]


class Rows(Protocol):
    @property
    def result_rows(self) -> Sequence[Sequence[Any]]: ...


class WarmTier(Protocol):
    """The warehouse calls the cold tier makes (a subset of clickhouse-connect's ``Client``)."""

    def query(self, query: str, parameters: Parameters | None = None,
              settings: Parameters | None = None) -> Rows: ...

    def query_arrow(self, query: str, parameters: Parameters | None = None,
                    settings: Parameters | None = None) -> pa.Table: ...

    def query_arrow_stream(self, query: str, parameters: Parameters | None = None,
                           settings: Parameters | None = None) -> AbstractContextManager[Any]: ...

    def insert(self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str]) -> Any: ...


@dataclass(frozen=True)
class WarehouseCall:
    """One warehouse call, in plain values (it may be pickled to another process)."""

    kind: Literal["rows", "arrow", "arrow_stream", "insert"]
    sql: str = ""  # for "insert": the table
    parameters: Parameters = field(default_factory=dict)
    settings: Parameters = field(default_factory=dict)
    rows: Sequence[Sequence[Any]] = ()  # for "insert"
    column_names: Sequence[str] = ()  # for "insert"


# Arrow strings rather than binaries, as clickhouse-connect's query_arrow asks by default.
_ARROW_STRINGS = {"output_format_arrow_string_as_string": 1}


def run_call(client: Client, call: WarehouseCall) -> Any:
    """Run ``call`` on ``client`` (on the thread that owns it). Arrow comes back as the engine's own
    IPC bytes, so that the platform process never holds the rows as Arrow buffers: the cold side
    parses them."""
    if call.kind == "rows":
        return [tuple(row) for row in client.query(call.sql, parameters=call.parameters,
                                                   settings=call.settings).result_rows]
    if call.kind == "insert":
        client.insert(call.sql, list(call.rows), column_names=list(call.column_names))
        return None
    fmt = "Arrow" if call.kind == "arrow" else "ArrowStream"
    return client.raw_query(call.sql, parameters=call.parameters, settings={**_ARROW_STRINGS, **call.settings},
                            fmt=fmt)


@dataclass(frozen=True)
class _Rows:
    result_rows: Sequence[Sequence[Any]]


class RelayedWarehouse:
    """A :class:`WarmTier` whose every call is handed to ``send`` (which runs it where the warehouse
    is and returns :func:`run_call`'s answer)."""

    def __init__(self, send: Callable[[WarehouseCall], Any]) -> None:
        self._send = send

    def query(self, query: str, parameters: Parameters | None = None, settings: Parameters | None = None) -> Rows:
        return _Rows(self._send(WarehouseCall("rows", query, dict(parameters or {}), dict(settings or {}))))

    def query_arrow(self, query: str, parameters: Parameters | None = None,
                    settings: Parameters | None = None) -> pa.Table:
        data = self._send(WarehouseCall("arrow", query, dict(parameters or {}), dict(settings or {})))
        return pa.ipc.open_file(pa.py_buffer(data)).read_all()

    @contextmanager
    def _batches(self, data: bytes) -> Iterator[Iterator[pa.RecordBatch]]:
        yield iter(pa.ipc.open_stream(pa.py_buffer(data)))

    def query_arrow_stream(self, query: str, parameters: Parameters | None = None,
                           settings: Parameters | None = None) -> AbstractContextManager[Iterator[pa.RecordBatch]]:
        """The whole answer at once, then its batches: the audit asks a chunk of bounded size at a time."""
        data = self._send(WarehouseCall("arrow_stream", query, dict(parameters or {}), dict(settings or {})))
        return self._batches(data)

    def insert(self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        self._send(WarehouseCall("insert", table, rows=[list(row) for row in data], column_names=list(column_names)))
