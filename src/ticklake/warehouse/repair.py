"""The start-up consistency check: find what a crash left half-written and re-derive it.

ClickHouse inserts are atomic per table, not across tables, and the gold view fires inside the silver
insert (stack.md, pitfall 2). So a ``kill -9`` can leave, for the last batch only: raw frames without
their bronze trades, bronze trades without silver (or dead-letter) rows, or silver rows whose gold
windows disagree. Each layer is checked against the one below over a look-back window from the newest
stored receive time, and what is missing is re-derived from the layer below:

1. raw -> bronze: frames that carried trades but have no bronze row are parsed again;
2. bronze -> silver | dead letters: trades in neither are validated again;
3. silver -> gold: candle windows whose trade count differs from silver are deleted and recomputed.

Every step is idempotent, so a crash during repair is repaired at the next start. It must run while
nothing else writes (before ingestion starts).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from ticklake.exchanges.mappers import parser_for, rest_trades
from ticklake.model import Trade
from ticklake.ops import metrics
from ticklake.warehouse import gold
from ticklake.warehouse.reader import timeframe_seconds
from ticklake.warehouse.sql import query
from ticklake.warehouse.writer import WarehouseWriter

log = logging.getLogger(__name__)

def repair(writer: WarehouseWriter, lookback: timedelta,
           subscribed: Mapping[str, frozenset[str]] | None = None) -> dict[str, int]:
    """Re-derive whatever is missing; returns how many frames, trades and windows were repaired.

    ``subscribed`` (exchange -> configured native symbols) is what the feeds subscribed to: a frame's
    trade of any other market is kept out of silver on the way, as the live feed keeps it (the mapper
    blanks its symbol); without it, re-parsed frames are checked for the symbols' form only.
    """
    client = writer.client
    newest = client.query(query("newest_receive")).result_rows[0][0]
    if newest is None or gold.as_utc(newest).year < 1971:
        return {"frames": 0, "silver": 0, "gold_windows": 0}
    since = gold.as_utc(newest) - lookback
    report = {
        "frames": _frames_to_bronze(writer, since, subscribed or {}),
        "silver": _bronze_to_silver(writer, since),
        "gold_windows": _silver_to_gold(writer, since),
    }
    if any(report.values()):
        log.warning("start-up check repaired %s (since %s)", report, since.isoformat())
    else:
        log.info("start-up check: every layer agrees since %s", since.isoformat())
    return report


def _frames_to_bronze(writer: WarehouseWriter, since: datetime, subscribed: Mapping[str, frozenset[str]]) -> int:
    rows = writer.client.query(query("frames_without_trades"), parameters={"since": since}).result_rows
    trades: list[Trade] = []
    for exchange, conn_id, frame_seq, received_us, payload, source, native_symbol in rows:
        if source == "rest":  # a page fetched to fill a gap: the REST parser, told its market
            try:
                trades.extend(rest_trades(exchange, payload, native_symbol, int(received_us), conn_id,
                                          int(frame_seq)))
            except ValueError as exc:
                log.error("cannot re-derive REST page %s/%s: %s", conn_id, frame_seq, exc)
            continue
        parsed = parser_for(exchange)(payload, int(received_us), conn_id, int(frame_seq),
                                      subscribed=subscribed.get(exchange))
        trades.extend(parsed.trades)
    if trades:
        plan = writer.plan([], trades)
        writer.commit(plan)
        metrics.REPAIRS.labels("bronze").inc(len(plan.bronze))
        log.warning("re-derived %d bronze trades from %d raw frames", len(plan.bronze), len(rows))
    return len(rows) if trades else 0


def _bronze_to_silver(writer: WarehouseWriter, since: datetime) -> int:
    rows = writer.client.query(query("bronze_without_silver"), parameters={"since": since}).result_rows
    if not rows:
        return 0
    trades = [
        Trade(exchange=r[0], symbol=r[1], native_symbol=r[2], trade_id=int(r[3]), price=r[4], qty=r[5], side=r[6],
              ts_us=int(r[7]), received_us=int(r[8]), conn_id=r[9], frame_seq=int(r[10]))
        for r in rows
    ]
    plan = writer.plan_from_bronze(trades)
    writer.commit(plan)
    metrics.REPAIRS.labels("silver").inc(len(trades))
    log.warning("re-derived %d silver/dead-letter rows from bronze", len(trades))
    return len(trades)


def _silver_to_gold(writer: WarehouseWriter, since: datetime) -> int:
    params: dict[str, object] = {"since": since, "timeframes": timeframe_seconds()}
    wrong = gold.disagreeing(gold.window_counts(writer.client, "silver_window_counts", params),
                             gold.window_counts(writer.client, "gold_window_counts", params))
    if not wrong:
        return 0
    gold.recompute(writer.client, wrong)
    log.warning("recomputed %d gold windows from silver", len(wrong))
    return len(wrong)
