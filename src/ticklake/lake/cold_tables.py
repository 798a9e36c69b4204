"""Access to the cold tables for the jobs that read and change them besides the offload: loading a
table when it exists, row filters by time range and market, scans, and a delete that always commits.

The audit (audit.py) reads one loaded snapshot in batches; the re-derivation (rederive.py) scans
market-days and deletes ranges. What the rows are then turned into is arrow_cast.py's; the offload's
own commits (append + watermark) stay in offload.py, next to the exactly-once rules they follow.

Imports pyiceberg: only the cold tier's worker and the CLI's jobs import this module, never the
platform or the serving process at start (cold_reader.py loads tables itself, importing pyiceberg late).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.expressions import And, BooleanExpression, EqualTo, GreaterThanOrEqual, LessThan, Not, NotIn
from pyiceberg.table import Table

from ticklake.lake.arrow_cast import regrouped
from ticklake.times import iso_us, us_from_datetime

log = logging.getLogger(__name__)


def load_if_exists(catalog: Catalog, namespace: str, name: str) -> Table | None:
    """The cold table as the catalog has it now; None when nothing was ever offloaded to it."""
    try:
        return catalog.load_table((namespace, name))
    except NoSuchTableError:  # pyiceberg 0.12's SQL and REST catalogs raise it for a missing namespace too
        return None


def time_range(column: str, start: datetime, end: datetime, exchange: str = "", symbol: str = "", *,
               other_markets: bool = False, rules_not_in: Sequence[str] = ()) -> BooleanExpression:
    """Rows with ``column`` in [start, end) of the market filter (or, with other_markets, of every other
    market), optionally without some dead-letter rules. "" for exchange or symbol: any."""
    expression = And(GreaterThanOrEqual(term=column, value=iso_us(us_from_datetime(start))),
                     LessThan(term=column, value=iso_us(us_from_datetime(end))))
    markets = [EqualTo(term=name, value=value) for name, value in (("exchange", exchange), ("symbol", symbol)) if value]
    if markets:
        market = markets[0] if len(markets) == 1 else And(markets[0], markets[1])
        expression = And(expression, Not(market) if other_markets else market)
    if rules_not_in:
        expression = And(expression, NotIn(term="rule", literals=list(rules_not_in)))
    return expression


def scan(table: Table, row_filter: BooleanExpression, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of the loaded snapshot matching ``row_filter``, every column or ``columns``, as pyiceberg
    reads them (text as large_string)."""
    if columns is None:
        return table.scan(row_filter=row_filter).to_arrow()
    return table.scan(row_filter=row_filter, selected_fields=tuple(columns)).to_arrow()


def scan_in_schema(table: Table, schema: pa.Schema, row_filter: BooleanExpression,
                   rows_per_table: int) -> Iterator[pa.Table]:
    """The rows of the loaded snapshot matching ``row_filter``, streamed in tables of about
    ``rows_per_table`` rows, cast to ``schema`` (the table's Arrow schema: pyiceberg reads large_string)."""
    reader = table.scan(row_filter=row_filter).to_arrow_batch_reader()
    for rows in regrouped(reader, rows_per_table):
        yield rows.select(schema.names).cast(schema).combine_chunks()


def delete_committing(catalog: Catalog, namespace: str, name: str, row_filter: BooleanExpression,
                      snapshot_properties: Mapping[str, str], attempts: int) -> None:
    """Delete the rows matching ``row_filter`` in one commit that always makes a snapshot, even when
    nothing matched (an empty append): a writer that loaded the table before, and read rows it meant
    to commit on top of it, then fails its commit (tables refuse commit retries). Made again on the
    reloaded table, up to ``attempts`` times, when another commit wins the race (a delete by filter can
    be repeated)."""
    summary = dict(snapshot_properties)
    for attempt in range(1, attempts + 1):
        table = catalog.load_table((namespace, name))
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Delete operation did not match any records")
                with table.transaction() as tx:
                    before = tx.table_metadata.current_snapshot_id
                    tx.delete(row_filter, snapshot_properties=summary)
                    if tx.table_metadata.current_snapshot_id == before:
                        tx.append(table.schema().as_arrow().empty_table(), snapshot_properties=summary)
            return
        except CommitFailedException as exc:
            if attempt == attempts:
                raise RuntimeError(f"cannot delete the range from cold {name}: {attempt} commits lost a race "
                                   f"to other writers ({exc}); run the same command again") from exc
            log.warning("cold %s changed while deleting the range (%s): trying again", name, exc)
            time.sleep(0.2 * attempt)
